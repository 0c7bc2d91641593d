"""The matrix of cases/: one test per case, parametrized and marked by suite/pytest_plugin.py."""
from suite.pytest_plugin import run_case


def test_case(ft_case, ft_session, request):
    run_case(ft_session, ft_case, request)
