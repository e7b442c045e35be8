"""Fuzzed CSV files for the `folder` loader: it loads them or raises `DatasetLayoutError`.

Users write these files by hand or from spreadsheets, so anything goes: missing
or extra columns, blank lines, quotes, stray whitespace, any Unicode. Three
inputs this fuzzing found escaping as other exceptions are pinned at the end:
camera labels holding characters that `str.isdigit()` accepts but `int()`
rejects (e.g. '²'), paths starting with `~unknownuser`, and files that are not
UTF-8.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unreid.data.datasets.folder import load_folder
from unreid.data.samples import DatasetLayoutError

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
ON_DISK = ["a.jpg", "b.PNG", "cam 2/c.jpeg", "sub/dir/d.bmp", "é ü.jpg", "x,y.jpg", 'q"uote.jpg']
# Characters parsers trip on, drawn often; KNOWN_BUGS are left out until folder.py is fixed
# (none now): '~' starts a home-directory path, '²' & co. are str.isdigit()
# characters that int() rejects.
KNOWN_BUGS = ""  # fixed: the pinned inputs below once escaped
DIGIT_LIKE = st.sampled_from([c for c in "0123456789٣۴७０𝟘²³¹①" if c not in KNOWN_BUGS])
TRICKY = st.sampled_from(
    [c for c in " _-.+,;:'\"\t\r\n\u00a0\u3000\ufeffİı\\/~" if c not in KNOWN_BUGS]
)
CHARS = st.one_of(
    DIGIT_LIKE,
    TRICKY,
    st.characters(blacklist_categories=("Cs", "No"), blacklist_characters="~"),
)


PATHS = st.one_of(
    st.sampled_from(ON_DISK + ["missing.jpg", "a.txt", "path", "", " ", "./a.jpg"]),
    st.builds(lambda t, e: t + e, st.text(CHARS, max_size=6), st.sampled_from([".jpg", ""])),
)
CAMERAS = st.one_of(
    st.sampled_from(["cam1", "cam10", "cam2", "0", "07", "1.5", "-1", "c", "", " "]),
    st.text(DIGIT_LIKE, min_size=1, max_size=3),
    st.text(st.characters(whitelist_categories=("Nd",)), min_size=1, max_size=3),
    st.text(CHARS, max_size=12),
)


@st.composite
def rows(draw: st.DrawFn, root: str) -> list[str]:
    """Mostly path,camera pairs (paths relative, absolute or odd); sometimes any cells."""
    if draw(st.integers(0, 9)) == 9:  # hypothesis leans to 0: keep that the common case
        return draw(st.lists(st.one_of(PATHS, CAMERAS), max_size=4))
    path = draw(PATHS)
    if draw(st.booleans()):
        path = root + "/" + path
    return [draw(st.sampled_from(["", " "])) + path, draw(CAMERAS)]


@st.composite
def csv_texts(draw: st.DrawFn, root: str) -> str:
    """Rows written by csv.writer (any quoting) or joined raw, blank lines mixed in."""
    table = draw(st.lists(rows(root), max_size=5))
    if draw(st.integers(0, 3)) < 3:  # 0, the common case: csv.writer
        out = io.StringIO()
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
        terminator = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
        csv.writer(out, quoting=quoting, lineterminator=terminator).writerows(table)
        text = out.getvalue()
    else:
        separator = draw(st.sampled_from([",", ",", ", ", ";", "\t"]))
        text = "\n".join(separator.join(row) for row in table)
    if draw(st.integers(0, 2)) == 2:
        text = draw(st.sampled_from(["path,camera\n", "\n", "\ufeff", '"', ""])) + text
    if draw(st.integers(0, 2)) == 2:
        text += draw(st.sampled_from(["\n", "\n\n", '"', ","]) | st.text(CHARS, max_size=5))
    return text


def write_tree(root: Path) -> None:
    for name in ON_DISK:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def check_loaded(csv_path: Path) -> None:
    try:
        dataset, report = load_folder(csv_path)
    except DatasetLayoutError as err:
        assert str(csv_path) in str(err)
        return
    train = dataset.train
    assert train and report["train"]["images"] == len(train)
    assert [s.path for s in train] == sorted(s.path for s in train)
    assert len({s.path for s in train}) == len(train)
    assert sorted({s.camera for s in train}) == list(range(len({s.camera for s in train})))
    for sample in train:
        assert Path(sample.path).is_file() and sample.pid is None


@FUZZ
@given(data=st.data())
def test_any_csv_text_loads_or_raises_the_layout_error(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).absolute()
        write_tree(root)
        text = data.draw(csv_texts(str(root)), label="csv")
        csv_path = root / "list.csv"
        csv_path.write_text(text, encoding="utf-8", newline="")
        check_loaded(csv_path)


@settings(FUZZ, max_examples=100)
@given(text=st.text(CHARS, max_size=80))
def test_arbitrary_text_as_a_csv_loads_or_raises_the_layout_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).absolute()
        write_tree(root)
        csv_path = root / "list.csv"
        csv_path.write_text(text, encoding="utf-8", newline="")
        check_loaded(csv_path)


def test_a_fuzzed_shape_that_loads(tmp_path: Path) -> None:
    # the success branch of check_loaded, pinned: header, quotes, blank lines, CRLF
    write_tree(tmp_path)
    text = 'path,camera\r\n\r\n"x,y.jpg",cam10\r\n a.jpg , cam2\r\n"q""uote.jpg",cam2\r\n'
    (tmp_path / "l.csv").write_text(text, encoding="utf-8", newline="")
    dataset, _ = load_folder(tmp_path / "l.csv")
    cameras = {Path(s.path).name: s.camera for s in dataset.train}
    assert cameras == {"a.jpg": 0, 'q"uote.jpg': 0, "x,y.jpg": 1}


# Inputs that once escaped as other exceptions (found by the fuzzing above).
KNOWN_ESCAPES = [
    pytest.param(
        "a.jpg,1²\n".encode(),
        id="superscript-camera",
    ),
    pytest.param(
        b"~nosuchuser987/a.jpg,cam1\n",
        id="unknown-user-home",
    ),
    pytest.param(
        b"a.jpg,\xff\xfe\n",
        id="not-utf8",
    ),
]


@pytest.mark.parametrize("content", KNOWN_ESCAPES)
def test_inputs_that_escape_as_other_exceptions(content: bytes, tmp_path: Path) -> None:
    # loaded, or a DatasetLayoutError naming the file; never another exception
    write_tree(tmp_path)
    (tmp_path / "list.csv").write_bytes(content)
    check_loaded(tmp_path / "list.csv")
