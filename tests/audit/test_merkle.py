"""RFC 9162 hashing and proofs against published test vectors, and properties on random trees.

Vectors: transparency-dev/merkle (the Certificate Transparency / Trillian Merkle library),
``proof/verify_test.go`` (leaves, roots of sizes 1-8, inclusion and consistency proofs of the
RFC 6962 reference tree) and ``rfc6962/rfc6962_test.go`` (hasher known answers), plus its
``testdata/consistency/1/happy-path.json``.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qamqor.audit import merkle


def dh(text: str) -> bytes:
    return bytes.fromhex(text)


# The 8-leaf reference tree of RFC 6962 test suites (transparency-dev/merkle verify_test.go).
LEAVES = [
    dh(""),
    dh("00"),
    dh("10"),
    dh("2021"),
    dh("3031"),
    dh("40414243"),
    dh("5051525354555657"),
    dh("606162636465666768696a6b6c6d6e6f"),
]
ROOTS = [  # MTH of the first 1..8 leaves
    dh("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    dh("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    dh("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    dh("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    dh("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    dh("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    dh("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# (leaf index, tree size, proof); the Go file numbers leaves from 1, these from 0.
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
LEAF_HASHES = [merkle.leaf_hash(d) for d in LEAVES]


def test_hasher_known_answers() -> None:
    # transparency-dev/merkle rfc6962/rfc6962_test.go
    assert (
        dh("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == merkle.EMPTY_ROOT
    )
    assert merkle.leaf_hash(b"") == dh(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert merkle.leaf_hash(b"L123456") == dh(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert merkle.node_hash(b"N123", b"N456") == dh(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_the_reference_tree(size: int) -> None:
    assert merkle.root(LEAVES[:size]) == ROOTS[size - 1]
    # The incremental path (what appends store) gives the same root.
    _created, edge = merkle.extend(0, [], LEAF_HASHES[:size])
    assert merkle.root_from_frontier(edge) == ROOTS[size - 1]
    assert len(edge) == size.bit_count()


def test_empty_tree() -> None:
    assert merkle.root([]) == merkle.EMPTY_ROOT
    assert merkle.root_from_frontier([]) == merkle.EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_vectors_generate_and_verify(index: int, size: int, proof: list[str]) -> None:
    expected = [dh(p) for p in proof]
    assert merkle.inclusion_proof(index, LEAF_HASHES[:size]) == expected
    root = ROOTS[size - 1]
    assert merkle.verify_inclusion(index, size, LEAF_HASHES[index], expected, root)
    # The probes of verify_test.go's corruptInclusionProof: all must fail.
    leaf = LEAF_HASHES[index]
    some = dh("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes = [
        (index - 1, size, leaf, expected, root),
        (index + 1, size, leaf, expected, root),
        (index ^ 2, size, leaf, expected, root),
        (index, size * 2, leaf, expected, root),
        (index, size // 2, leaf, expected, root),
        (index, size, b"WrongLeaf", expected, root),
        (index, size, leaf, expected, merkle.EMPTY_ROOT),
        (index, size, leaf, expected, some),
        (index, size, leaf, [*expected, b""], root),
        (index, size, leaf, [*expected, root], root),
        (index, size, leaf, [b"", *expected], root),
        (index, size, leaf, [root, *expected], root),
        (index, size, leaf, expected[:-1], root),
    ]
    for i in range(len(expected)):
        flipped = list(expected)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((index, size, leaf, flipped, root))
    if len(expected) > 1:
        probes.append((index, size, leaf, [expected[0], some, *expected[1:]], root))
    for probe in probes:
        assert not merkle.verify_inclusion(*probe), probe


def test_single_leaf_and_degenerate_inclusion() -> None:
    h = merkle.leaf_hash(b"data")
    assert merkle.verify_inclusion(0, 1, h, [], h)
    assert not merkle.verify_inclusion(0, 1, b"", [], h)
    assert not merkle.verify_inclusion(0, 1, h, [], b"")
    for index, size in [(0, 0), (1, 0), (2, 1)]:
        assert not merkle.verify_inclusion(index, size, h, [], merkle.EMPTY_ROOT)


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_consistency_vectors_generate_and_verify(first: int, second: int, proof: list[str]) -> None:
    expected = [dh(p) for p in proof]
    assert merkle.consistency_proof(first, LEAF_HASHES[:second]) == expected
    r1, r2 = ROOTS[first - 1], ROOTS[second - 1]
    assert merkle.verify_consistency(first, second, r1, r2, expected)
    # verify_test.go corruptConsistencyProof probes
    probes = [
        (first - 1, second, r1, r2, expected),
        (first + 1, second, r1, r2, expected),
        (first ^ 2, second, r1, r2, expected),
        (first, second * 2, r1, r2, expected),
        (first, second // 2, r1, r2, expected),
        (first, second, b"WrongRoot", r2, expected),
        (first, second, r1, b"WrongRoot", expected),
        (first, second, r2, r1, expected),
        (first, second, r1, r2, []),
        (first, second, r1, r2, [*expected, b""]),
        (first, second, r1, r2, [*expected, r1]),
        (first, second, r1, r2, [*expected, r2]),
        (first, second, r1, r2, [b"", *expected]),
        (first, second, r1, r2, [r1, *expected]),
        (first, second, r1, r2, [r2, *expected]),
        (first, second, r1, r2, [expected[0], *expected]),
        (first, second, r1, r2, expected[:-1]),
    ]
    for i in range(len(expected)):
        flipped = list(expected)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((first, second, r1, r2, flipped))
    for probe in probes:
        assert not merkle.verify_consistency(*probe), probe


def test_consistency_happy_path_json_vector() -> None:
    # transparency-dev/merkle testdata/consistency/1/happy-path.json
    root1 = base64.b64decode("bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=")
    root2 = base64.b64decode("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=")
    proof = [
        base64.b64decode(p)
        for p in (
            "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ=",
        )
    ]
    assert (root1, root2) == (ROOTS[0], ROOTS[7])
    assert merkle.verify_consistency(1, 8, root1, root2, proof)


def test_trivial_consistency_cases() -> None:
    # verify_test.go TestVerifyConsistency: sizes that are always consistent, and not.
    r1, r2 = b"don't care 1", b"don't care 2"
    assert merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    assert merkle.verify_consistency(1, 1, r2, r2, [])
    assert not merkle.verify_consistency(1, 1, r1, r2, [])
    assert not merkle.verify_consistency(1, 0, r1, r2, [])
    assert not merkle.verify_consistency(2, 1, r1, r2, [])
    assert not merkle.verify_consistency(1, 2, r1, r2, [])
    assert not merkle.verify_consistency(1, 1, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [r1])


def test_perfect_subtrees_decompose_ranges() -> None:
    assert merkle.perfect_subtrees(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.perfect_subtrees(8, 13) == [(2, 2), (0, 12)]
    with pytest.raises(ValueError):
        merkle.perfect_subtrees(3, 7)  # not a subtree of the RFC split
    with pytest.raises(ValueError):
        merkle.perfect_subtrees(4, 4)


def test_extend_continues_from_any_edge() -> None:
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(37)]
    created_all, edge_all = merkle.extend(0, [], hashes)
    created_a, edge_a = merkle.extend(0, [], hashes[:21])
    created_b, edge_b = merkle.extend(21, edge_a, hashes[21:])
    assert edge_b == edge_all
    assert created_a + created_b == created_all
    assert len(created_all) == 37 - (37).bit_count()  # a binary tree of n leaves: n - popcount
    with pytest.raises(ValueError):
        merkle.extend(21, edge_a[:-1], hashes[21:])


# --- properties on random trees --------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=140)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(sizes)
    leaves = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(size)]
    return leaves, draw(st.integers(min_value=0, max_value=size - 1))


def _flip(proof: list[bytes], which: int, bit: int) -> list[bytes]:
    changed = list(proof)
    element = bytearray(changed[which])
    element[bit // 8] ^= 1 << (bit % 8)
    changed[which] = bytes(element)
    return changed


@settings(max_examples=200, deadline=None)
@given(tree_and_index(), st.data())
def test_random_inclusion_proofs_verify_and_any_flipped_bit_fails(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, index = case
    size = len(leaves)
    root = merkle.root_of_leaf_hashes(leaves)
    _, edge = merkle.extend(0, [], leaves)
    assert merkle.root_from_frontier(edge) == root
    proof = merkle.inclusion_proof(index, leaves)
    assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
    assert not merkle.verify_inclusion(index, size, leaves[index], proof, _flip([root], 0, 1)[0])
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        assert not merkle.verify_inclusion(
            index, size, leaves[index], _flip(proof, which, bit), root
        )
    bit = data.draw(st.integers(0, 255))
    assert not merkle.verify_inclusion(index, size, _flip([leaves[index]], 0, bit)[0], proof, root)


@settings(max_examples=200, deadline=None)
@given(sizes, st.data())
def test_random_consistency_proofs_verify_and_any_flipped_bit_fails(
    second: int, data: st.DataObject
) -> None:
    leaves = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(second)]
    first = data.draw(st.integers(min_value=1, max_value=second))
    r1 = merkle.root_of_leaf_hashes(leaves[:first])
    r2 = merkle.root_of_leaf_hashes(leaves)
    proof = merkle.consistency_proof(first, leaves)
    assert merkle.verify_consistency(first, second, r1, r2, proof)
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        assert not merkle.verify_consistency(first, second, r1, r2, _flip(proof, which, bit))
        bit = data.draw(st.integers(0, 255))
        assert not merkle.verify_consistency(first, second, _flip([r1], 0, bit)[0], r2, proof)
        assert not merkle.verify_consistency(first, second, r1, _flip([r2], 0, bit)[0], proof)
