"""The minimal example model that new authors copy: pure functions, no HTTP."""


def describe(required_field: str, optional_field: str | None = None) -> str:
    if optional_field:
        return f"Received {required_field} and {optional_field}"
    return f"Received {required_field}"


def greet(name: str) -> str:
    return f"Hi {name}"
