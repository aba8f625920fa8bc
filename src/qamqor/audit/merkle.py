"""RFC 9162 §2.1 Merkle tree hashing and proofs, independent of any storage.

A tree over n leaves is addressed by *perfect subtrees* ``(level, index)``: the subtree of
2**level leaves starting at leaf ``index * 2**level``. Level 0 is a leaf hash. In the RFC's
recursive split (k = largest power of two smaller than n) every subtree ``D[a:b]`` starts at
a multiple of the next power of two >= ``b - a``, so its hash folds from the perfect subtrees
of the binary decomposition of ``b - a`` (:func:`perfect_subtrees`). Proofs are therefore
planned here as lists of ranges, fetched from storage as perfect-subtree hashes (one query, at
most about 2·log2(n) rows) and folded back with :func:`fold_range`.

Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) step by step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]  # leaves [start, end)
NodeId = tuple[int, int]  # (level, index)


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    if n < 2:
        raise ValueError(f"no split for a tree of {n} leaves")
    return 1 << ((n - 1).bit_length() - 1)


def root_of_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes, by the RFC's recursive definition (reference, O(n))."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = split_point(n)
    return node_hash(root_of_leaf_hashes(hashes[:k]), root_of_leaf_hashes(hashes[k:]))


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf *data* (not hashes)."""
    return root_of_leaf_hashes([leaf_hash(d) for d in leaves])


# --- planning: which perfect subtrees a root or proof needs ----------------------------------


def perfect_subtrees(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees whose fold is MTH(D[start:end]), left to right.

    ``start`` must be aligned as in the RFC split (a multiple of a power of two >= end - start),
    which holds for every subtree the RFC's recursion visits and for ``start = 0``.
    """
    size = end - start
    if size <= 0:
        raise ValueError(f"empty range [{start}, {end})")
    span = 1 << (size - 1).bit_length()
    if start % span:
        raise ValueError(f"range [{start}, {end}) is not an RFC 9162 subtree")
    nodes = []
    position = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            nodes.append((level, position >> level))
            position += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Fold a range's perfect-subtree hashes (left to right, strictly decreasing size)."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def fold_range(start: int, end: int, lookup: Callable[[NodeId], bytes]) -> bytes:
    """MTH(D[start:end]) from stored perfect-subtree hashes."""
    return fold([lookup(node) for node in perfect_subtrees(start, end)])


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]) as leaf ranges, in proof order (leaf side first)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[Range]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true) as ranges, in proof order."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    if first == 0 or first == second:
        return []
    ranges: list[Range] = []
    start, end, complete = 0, second, True
    m = first
    # SUBPROOF recurses into one child and appends the other's hash after the recursion, so
    # the iteration collects them outermost-first and reverses at the end.
    while True:
        size = end - start
        if m == size:
            if not complete:
                ranges.append((start, end))
            break
        k = split_point(size)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    ranges.reverse()
    return ranges


def nodes_for(ranges: Iterable[Range]) -> list[NodeId]:
    """Every perfect subtree the ranges need, each once, in first-seen order."""
    seen: dict[NodeId, None] = {}
    for start, end in ranges:
        for node in perfect_subtrees(start, end):
            seen.setdefault(node)
    return list(seen)


def resolve(ranges: Iterable[Range], stored: Mapping[NodeId, bytes]) -> list[bytes]:
    """The hash of each range from a mapping of perfect-subtree hashes."""
    return [fold_range(start, end, stored.__getitem__) for start, end in ranges]


# --- in-memory proofs (for tests, tools and small trees) --------------------------------------


def _memory_lookup(leaf_hashes: Sequence[bytes]) -> Callable[[NodeId], bytes]:
    def lookup(node: NodeId) -> bytes:
        level, index = node
        start = index << level
        return root_of_leaf_hashes(leaf_hashes[start : start + (1 << level)])

    return lookup


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    lookup = _memory_lookup(leaf_hashes)
    return [fold_range(s, e, lookup) for s, e in inclusion_ranges(index, len(leaf_hashes))]


def consistency_proof(first: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    lookup = _memory_lookup(leaf_hashes)
    return [fold_range(s, e, lookup) for s, e in consistency_ranges(first, len(leaf_hashes))]


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) -------------------------------------------


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """The root that ``proof`` implies for ``leaf`` at ``index``, or None if it cannot fit."""
    if not 0 <= index < size or len(leaf) != HASH_SIZE:
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != HASH_SIZE or sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``leaf`` sit at ``index`` of the tree of ``size`` with this root?"""
    return root_from_inclusion_proof(index, size, leaf, proof) == root_hash


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of ``second`` an append-only extension of ``first``?"""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        # Every tree extends the empty one; RFC 9162 defines no proof for it.
        return not proof and first_root == EMPTY_ROOT
    if any(len(p) != HASH_SIZE for p in proof):
        return False
    path = list(proof)
    # Step 1: if first is a power of two, the first tree's root is the first proof node.
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    # Step 3: while LSB(fn) is set, shift both right.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# --- appending: the right edge (frontier) ----------------------------------------------------


def frontier_nodes(size: int) -> list[NodeId]:
    """The perfect subtrees on the right edge of a tree of ``size`` (largest first)."""
    return perfect_subtrees(0, size) if size else []


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """Root of a tree from its right-edge hashes (largest subtree first)."""
    return fold(frontier) if frontier else EMPTY_ROOT


def extend(
    size: int, frontier: Sequence[bytes], new_leaves: Iterable[bytes]
) -> tuple[list[tuple[int, int, bytes]], list[bytes]]:
    """Append leaf hashes to a tree of ``size`` with the given right edge.

    Returns the newly completed inner nodes ``(level, index, hash)`` (level >= 1; level-0
    hashes are the leaves themselves) and the new right edge, largest subtree first.
    """
    edge = list(frontier)
    if len(edge) != size.bit_count():
        raise ValueError(f"a tree of {size} has {size.bit_count()} edge nodes, got {len(edge)}")
    created: list[tuple[int, int, bytes]] = []
    n = size
    for h in new_leaves:
        index, level = n, 0
        # Each trailing 1 bit of the new leaf's index closes a subtree with the edge node left
        # of it: leaf 7 (0b111) completes (1,3), (2,1) and (3,0).
        while index & 1:
            h = node_hash(edge.pop(), h)
            level += 1
            index >>= 1
            created.append((level, index, h))
        edge.append(h)
        n += 1
    return created, edge
