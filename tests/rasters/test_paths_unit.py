"""Addresses against local paths: what is kept as written, names for messages, credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from eoscale.io.paths import is_address, location_name, raster_location, redact


@pytest.mark.parametrize("text, address", [
    ("https://host/a.tif", True), ("s3://bucket/key.tif", True), ("gs://b/k", True),
    ("az://c/k", True), ("HTTP://HOST/A.TIF", True), ("/vsizip/a.zip/b.tif", True),
    ("/vsicurl/https://h/a.tif", True), ("data/a.tif", False), ("/abs/a.tif", False),
    ("~/a.tif", False), ("C:\\data\\a.tif", False), ("a:b.tif", False),
])
def test_is_address(text, address):
    assert is_address(text) is address
    location = raster_location(text, Path("/base"))
    assert (location == text) if address else isinstance(location, Path)


def test_a_path_object_is_never_an_address():
    assert not is_address(Path("s3:/bucket/key.tif"))


@pytest.mark.parametrize("text, expected", [
    ("https://user:pa:ss@host/a.tif", "https://host/a.tif"),
    ("/vsizip//vsicurl/http://u:p@127.0.0.1:80/a.zip/b.tif",
     "/vsizip//vsicurl/http://127.0.0.1:80/a.zip/b.tif"),
    ("cannot open https://u:p@h/a.tif and http://v:q@h/b.tif", "cannot open https://h/a.tif and "
                                                              "http://h/b.tif"),
    ("s3://bucket/with@sign/key.tif", "s3://bucket/with@sign/key.tif"),
    ("data/a@b.tif", "data/a@b.tif"),
])
def test_redact_removes_user_and_password_only(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("location, name", [
    ("https://u:p@host/dir/b04.tif?sig=secret", "b04.tif"), ("s3://bucket/key/b.tif", "b.tif"),
    ("/vsizip/a.zip/inside/c.tif", "c.tif"), (Path("/data/d.tif"), "d.tif"),
])
def test_location_name(location, name):
    assert location_name(location) == name
