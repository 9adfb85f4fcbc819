"""Properties of COCO RLE: masks round-trip through every encoder and decoder of the
project, and the annotation validator (`rle_problem`) accepts exactly the counts strings
that pycocotools reads as a mask of the stated size (profiles in tests/conftest.py).
Strings that pycocotools cannot be given safely (a number cut at the end: it reads past the
string) are checked against the validator alone."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, example, given
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from maskrcnn.data.validate import decode_counts_string, rle_problem
from maskrcnn.inference.tiling.instances import crop_to_rle
from maskrcnn.ops.masks import mask_to_rle, rle_to_mask

RLE_CODE = "".join(chr(48 + c) for c in range(64))  # '0'..'o', 5 bits and a "more" bit each


@st.composite
def masks(draw) -> np.ndarray:
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return (rng.random((height, width)) < density).astype(np.uint8)


def column_major_runs(mask: np.ndarray) -> list[int]:
    """Run lengths of the mask read column by column, starting with a (maybe empty) run of 0s."""
    flat = mask.T.reshape(-1)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


@given(masks())
def test_masks_round_trip_through_every_encoder_and_decoder(mask):
    height, width = mask.shape
    rle = mask_to_rle(mask)
    assert rle_problem(rle, height, width) is None
    assert np.array_equal(rle_to_mask(rle, height, width), mask)
    assert decode_counts_string(rle["counts"]) == column_major_runs(mask)
    uncompressed = {"size": [height, width], "counts": column_major_runs(mask)}
    assert rle_problem(uncompressed, height, width) is None
    assert np.array_equal(rle_to_mask(uncompressed), mask)
    if mask.any():  # the tiled output's crop encoder gives pycocotools' string
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(bool)
        assert crop_to_rle(crop, int(rows[0]), int(cols[0]), height, width) == rle


def numbers_of(counts: str) -> list[str]:
    """The counts string cut into its numbers (a number ends at a character without 0x20)."""
    numbers, current = [], ""
    for char in counts:
        current += char
        if not (ord(char) - 48) & 0x20:
            numbers.append(current)
            current = ""
    return numbers + ([current] if current else [])


@st.composite
def counts_strings(draw) -> tuple[str, int, int]:
    """A valid counts string with one edit (a character replaced, inserted or removed), or a
    random one, and the size it claims."""
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        counts = mask_to_rle((rng.random((height, width)) < 0.4).astype(np.uint8))["counts"]
        at = draw(st.integers(0, len(counts)))
        char = draw(st.sampled_from(RLE_CODE))
        edit = draw(st.sampled_from(["replace", "insert", "delete"]))
        if edit == "insert" or at == len(counts):
            counts = counts[:at] + char + counts[at:]
        elif edit == "replace":
            counts = counts[:at] + char + counts[at + 1 :]
        else:
            counts = counts[:at] + counts[at + 1 :]
    else:
        counts = draw(st.text(alphabet=RLE_CODE, max_size=10))
    return counts, height, width


def runs_as_pycocotools_reads(counts: str) -> list[int]:
    """The run lengths pycocotools' rleFrString stores for `counts`: as `decode_counts_string`
    but in its C types (a 64-bit long per number, stored as a 32-bit unsigned run), so a
    negative run becomes a huge one instead of an error. Checked against pycocotools' own
    `area` (the sum of the odd runs) in the test; pycocotools' merge, which would give every
    run, re-encodes into a buffer of 6 characters a run and overflows it on huge runs."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            code = ord(counts[position]) - 48
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value % 2**32)
    return runs


@given(counts_strings())
@example(("0", 2, 2))  # one run of 0 pixels: too short
@example(("4", 2, 2))  # 4 zeros: the whole 2 x 2 mask
@example(("13", 2, 2))  # 1 zero, 3 ones
@example(("1131", 2, 2))  # runs 1, 1, 3, then 1 + 1 (a delta to the run two before) = 2: 7 pixels, not 4
@example(("11?", 2, 2))  # '?' = 15: runs 1, 1, 15, 17 pixels, not 4
@example(("32O", 2, 2))  # runs 3, 2, -1 ('O' = 31 with the sign bit): they add up to 4, but a run is negative
def test_the_validator_accepts_exactly_what_pycocotools_reads_as_a_mask_of_the_size(case):
    counts, height, width = case
    assume(all(len(number) <= 6 for number in numbers_of(counts)))  # pycocotools shifts a 64-bit long
    if counts and (ord(counts[-1]) - 48) & 0x20:
        # a number cut short: pycocotools would read past the string's end; the validator refuses it
        assert rle_problem({"size": [height, width], "counts": counts}, height, width) is not None
        return
    runs = runs_as_pycocotools_reads(counts)
    rle = {"size": [height, width], "counts": counts.encode("ascii")}
    assert int(coco_mask.area(rle)) == sum(runs[1::2]) % 2**32  # read as pycocotools reads it
    accepted = rle_problem({"size": [height, width], "counts": counts}, height, width) is None
    assert accepted == (sum(runs) == height * width), (counts, runs)
    if accepted:
        decoded = coco_mask.decode(rle)  # safe: the runs fill the mask exactly
        assert decoded.shape == (height, width) and int(decoded.sum()) == sum(runs[1::2])
        assert np.array_equal(rle_to_mask({"size": [height, width], "counts": counts}), decoded)


@given(st.text(min_size=1, max_size=6), st.integers(1, 6), st.integers(1, 6))
@example("4 ", 2, 2)
@example("4p", 2, 2)  # 'p' is past the code alphabet
def test_characters_outside_the_code_are_refused(counts, height, width):
    assume(any(char not in RLE_CODE for char in counts))
    assert rle_problem({"size": [height, width], "counts": counts}, height, width) is not None


@given(masks(), st.integers(1, 30), st.integers(1, 30))
def test_a_size_other_than_the_image_is_refused(mask, height, width):
    assume([height, width] != list(mask.shape))
    assert rle_problem(mask_to_rle(mask), height, width) == "RLE size does not match the image size"
