"""The matrix of cases/: one test per case, parametrized and marked by suite/plugin/cases.py."""
from suite.plugin.cases import run_case


def test_case(ft_case, ft_session, request):
    run_case(ft_session, ft_case, request)
