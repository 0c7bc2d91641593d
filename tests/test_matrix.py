"""The matrix of cases/: one test per case, parametrized and marked by suite/plugin/cases.py."""
import pytest

from suite.plugin.cases import run_case

pytestmark = pytest.mark.slow  # a matrix case trains


def test_case(ft_case, ft_session, request):
    run_case(ft_session, ft_case, request)
