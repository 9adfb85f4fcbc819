"""One base error type: every exception class of the package is a UserError, shown as one line."""

import importlib
import inspect
import pkgutil

import pytest

import maskrcnn
from maskrcnn.errors import UserError, error_message, is_user_error


def _package_exception_classes() -> list[type]:
    found = []
    for info in pkgutil.walk_packages(maskrcnn.__path__, "maskrcnn."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_exception_class_of_the_package_is_a_user_error():
    classes = _package_exception_classes()
    assert len(classes) > 30  # the walk really reached the package's modules
    strays = [f"{c.__module__}.{c.__name__}" for c in classes if not issubclass(c, UserError)]
    assert strays == []


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (UserError("bad"), True),
        (FileNotFoundError(2, "No such file or directory", "x.png"), True),
        (RuntimeError("a bug"), False),
        (ValueError("a bug too"), False),
    ],
)
def test_is_user_error(exc, expected):
    assert is_user_error(exc) is expected


def test_error_message_names_the_file():
    assert error_message(FileNotFoundError(2, "No such file or directory", "x.png")) == "x.png: No such file or directory"
    assert error_message(UserError("annotations.json: expected a list")) == "annotations.json: expected a list"


def test_no_two_error_classes_share_a_name():
    # two DeviceError classes once lived in two modules; catching one missed the other
    names = [c.__name__ for c in _package_exception_classes()]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
