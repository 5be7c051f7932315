import pytest

from updraft.core import arglist


@pytest.mark.parametrize(
    ("value", "attribute", "rendered"),
    [
        ("a b   c", "Args", "a b c"),
        ('a \\"b\\" c', "Args", 'a "b" c'),
        ('"one \'two three\' ""q"""', "Arguments", "one two' 'three \"q\""),
        ("\"'it''s' ''\"", "Arguments", "it''''s ''"),
        ("\"a  'b c'd  e\"", "Arguments", "a b' 'cd e"),
        ('""', "Arguments", ""),
    ],
)
def test_arguments(value: str, attribute: str, rendered: str) -> None:
    assert arglist.parse_arguments(value) == (attribute, rendered)


@pytest.mark.parametrize("value", ['a "b c" d', '"unbalanced \'quote"', '"one" two', '"never closed'])
def test_bad_arguments(value: str) -> None:
    with pytest.raises(arglist.SyntaxProblem):
        arglist.parse_arguments(value)


def test_environment_both_syntaxes_sorted() -> None:
    assert arglist.render_environment(arglist.parse_environment("Z=1;A=x y")) == "A=x' 'y Z=1"
    assert (
        arglist.render_environment(arglist.parse_environment('"Z=1 A=\'x y\' Q=""q"" E="'))
        == "A=x' 'y E= Q=\"q\" Z=1"
    )
    with pytest.raises(arglist.SyntaxProblem, match="Missing '='"):
        arglist.parse_environment('"NOEQUALS"')


def test_getenv_patterns() -> None:
    env = {"LANG": "C", "LANGUAGE": "en", "HOME": "/h", "PATH": "/bin"}
    assert arglist.getenv_variables("LANG*, HOME", env) == {"LANG": "C", "LANGUAGE": "en", "HOME": "/h"}
    assert arglist.getenv_variables("true", env) == env
    assert arglist.getenv_variables("false", env) == {}


def test_render_roundtrip() -> None:
    items = ["plain", "two words", "it's", "", 'dq"']
    assert arglist.split_v2(arglist.render_v2(items), "arguments") == items
