"""The Vega bundle the live chart and the reports carry: made by vl-convert once per version and
kept in the user's cache folder; a cut or foreign file there is made again, and a cache folder
that cannot be written costs the time, not the chart."""

import pytest

from nbkit.view import vega


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    vega.javascript.cache_clear()
    yield tmp_path / "cache" / "nbkit"
    vega.javascript.cache_clear()


def made_by_vl_convert(monkeypatch) -> list:
    import vl_convert

    calls, real = [], vl_convert.javascript_bundle
    monkeypatch.setattr(vl_convert, "javascript_bundle", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_the_bundle_is_made_once_then_read_from_the_cache(fresh, monkeypatch):
    calls = made_by_vl_convert(monkeypatch)
    first = vega.javascript()
    assert calls == [1] and vega.WHOLE in first[-400:]
    (kept,) = fresh.glob("vega-bundle-*.js")
    assert kept.read_text() == first
    vega.javascript.cache_clear()
    assert vega.javascript() == first and calls == [1]  # read, not made again


def test_a_cut_bundle_is_made_again_and_an_unwritable_cache_still_gives_it(fresh, monkeypatch):
    calls = made_by_vl_convert(monkeypatch)
    whole = vega.javascript()
    (kept,) = fresh.glob("vega-bundle-*.js")
    kept.write_text(whole[: len(whole) // 2])  # cut off
    vega.javascript.cache_clear()
    assert vega.javascript() == whole and len(calls) == 2
    assert kept.read_text() == whole  # put right
    blocked = fresh.parent.parent / "a file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # a cache folder that cannot be made
    vega.javascript.cache_clear()
    assert vega.javascript() == whole and len(calls) == 3
