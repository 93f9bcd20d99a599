"""Contract test suites, one module per component kind, for built-ins and third-party plugins.

Plugin authors run the same checks the built-ins pass, e.g. in their own pytest file:

    from mtkit.testing.adapter import check_adapter
    def test_my_adapter(): check_adapter(MyAdapter, {"rank": 4})
"""
