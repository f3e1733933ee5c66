use super::*;
use crate::hex;

fn h(text: &str) -> Hash {
    hex::decode_array(text).unwrap()
}

fn hs(texts: &[&str]) -> Vec<Hash> {
    texts.iter().map(|t| h(t)).collect()
}

// The reference test vectors of Certificate Transparency, copied from
// github.com/transparency-dev/merkle, file proof/verify_test.go (`leaves`, `roots`,
// `inclusionProofs`, `consistencyProofs`); the same values appear in
// google/certificate-transparency and google/trillian. In `inclusionProofs` the leaf number is
// 1-based; the 0-based index is written here.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (0-based index, tree size, audit path).
const INCLUSION: [(u64, u64, &[&str]); 4] = [
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, consistency proof).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn reference_leaves() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|text| leaf_hash(&hex::decode(text).unwrap()))
        .collect()
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut out = *hash;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

#[test]
fn empty_tree_is_the_hash_of_nothing() {
    assert_eq!(
        hex::encode(&empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(root(&[]), empty_root());
    assert_eq!(MerkleTree::new().root(), empty_root());
    assert_eq!(Frontier::new().root(), empty_root());
}

#[test]
fn roots_match_the_reference_vectors() {
    let leaves = reference_leaves();
    let tree = MerkleTree::from_leaves(leaves.clone());
    let mut frontier = Frontier::new();
    for size in 1..=8 {
        frontier.push(leaves[size - 1]);
        let expected = h(ROOTS[size - 1]);
        assert_eq!(root(&leaves[..size]), expected, "slice, size {size}");
        assert_eq!(
            tree.root_at(size as u64).unwrap(),
            expected,
            "tree, size {size}"
        );
        assert_eq!(frontier.root(), expected, "frontier, size {size}");
    }
}

#[test]
fn inclusion_proofs_match_the_reference_vectors() {
    let leaves = reference_leaves();
    let tree = MerkleTree::from_leaves(leaves.clone());
    for (index, size, expected) in INCLUSION {
        let expected = hs(expected);
        let prefix = &leaves[..size as usize];
        assert_eq!(inclusion_proof(prefix, index).unwrap(), expected);
        assert_eq!(tree.inclusion_proof(index, size).unwrap(), expected);
        let root = h(ROOTS[size as usize - 1]);
        verify_inclusion(&leaves[index as usize], index, size, &expected, &root).unwrap();
    }
}

#[test]
fn consistency_proofs_match_the_reference_vectors() {
    let leaves = reference_leaves();
    let tree = MerkleTree::from_leaves(leaves.clone());
    for (old, new, expected) in CONSISTENCY {
        let expected = hs(expected);
        let prefix = &leaves[..new as usize];
        assert_eq!(consistency_proof(prefix, old).unwrap(), expected);
        assert_eq!(tree.consistency_proof(old, new).unwrap(), expected);
        let old_root = h(ROOTS[old as usize - 1]);
        let new_root = h(ROOTS[new as usize - 1]);
        verify_consistency(old, new, &old_root, &new_root, &expected).unwrap();
    }
}

/// The corruptions `corruptInclusionProof` in transparency-dev/merkle tries: each must fail.
#[test]
fn corrupted_reference_inclusion_proofs_fail() {
    let leaves = reference_leaves();
    let some_hash = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size, proof) in INCLUSION {
        let proof = hs(proof);
        let root = h(ROOTS[size as usize - 1]);
        let leaf = leaves[index as usize];
        let bad = |i: u64, s: u64, leaf: &Hash, p: &[Hash], r: &Hash| {
            verify_inclusion(leaf, i, s, p, r).is_err()
        };
        assert!(index == 0 || bad(index - 1, size, &leaf, &proof, &root));
        assert!(bad(index + 1, size, &leaf, &proof, &root));
        assert!(bad(index ^ 2, size, &leaf, &proof, &root));
        assert!(bad(index, size * 2, &leaf, &proof, &root));
        assert!(bad(index, size / 2, &leaf, &proof, &root));
        assert!(bad(index, size, &some_hash, &proof, &root));
        assert!(bad(index, size, &leaf, &proof, &empty_root()));
        assert!(bad(index, size, &leaf, &proof, &some_hash));
        let mut longer = proof.clone();
        longer.push(root);
        assert!(bad(index, size, &leaf, &longer, &root));
        let mut preceded = vec![root];
        preceded.extend_from_slice(&proof);
        assert!(bad(index, size, &leaf, &preceded, &root));
        assert!(bad(index, size, &leaf, &proof[..proof.len() - 1], &root));
        for i in 0..proof.len() {
            let mut wrong = proof.clone();
            wrong[i] = flip(&wrong[i], 3);
            assert!(bad(index, size, &leaf, &wrong, &root));
        }
    }
}

/// The corruptions `corruptConsistencyProof` in transparency-dev/merkle tries: each must fail.
#[test]
fn corrupted_reference_consistency_proofs_fail() {
    for (old, new, proof) in CONSISTENCY.into_iter().filter(|c| !c.2.is_empty()) {
        let proof = hs(proof);
        let r1 = h(ROOTS[old as usize - 1]);
        let r2 = h(ROOTS[new as usize - 1]);
        let bad = |o: u64, n: u64, a: &Hash, b: &Hash, p: &[Hash]| {
            verify_consistency(o, n, a, b, p).is_err()
        };
        assert!(bad(old - 1, new, &r1, &r2, &proof));
        assert!(bad(old + 1, new, &r1, &r2, &proof));
        assert!(bad(old ^ 2, new, &r1, &r2, &proof));
        assert!(bad(old, new * 2, &r1, &r2, &proof));
        assert!(bad(old, new / 2, &r1, &r2, &proof));
        assert!(bad(old, new, &empty_root(), &r2, &proof));
        assert!(bad(old, new, &r1, &empty_root(), &proof));
        assert!(bad(old, new, &r2, &r1, &proof));
        assert!(bad(old, new, &r1, &r2, &[]));
        for extra in [r1, r2] {
            let mut longer = proof.clone();
            longer.push(extra);
            assert!(bad(old, new, &r1, &r2, &longer));
        }
        for extra in [r1, r2, proof[0]] {
            let mut preceded = vec![extra];
            preceded.extend_from_slice(&proof);
            assert!(bad(old, new, &r1, &r2, &preceded));
        }
        assert!(bad(old, new, &r1, &r2, &proof[..proof.len() - 1]));
        for i in 0..proof.len() {
            let mut wrong = proof.clone();
            wrong[i] = flip(&wrong[i], 4);
            assert!(bad(old, new, &r1, &r2, &wrong));
        }
    }
}

/// The edge cases of `TestVerifyConsistency` in transparency-dev/merkle.
#[test]
fn consistency_edge_cases() {
    let r1 = h("0000000000000000000000000000000000000000000000000000000000000001");
    let r2 = h("0000000000000000000000000000000000000000000000000000000000000002");
    let e = empty_root();
    assert!(verify_consistency(0, 0, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(1, 1, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(0, 0, &r1, &r1, &[]).is_ok());
    assert!(verify_consistency(0, 1, &r1, &r2, &[]).is_ok());
    assert!(verify_consistency(1, 1, &r2, &r2, &[]).is_ok());
    assert!(verify_consistency(1, 0, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(2, 1, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(1, 2, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(0, 0, &e, &r2, &[]).is_err());
    assert!(verify_consistency(1, 1, &e, &r2, &[]).is_err());
    assert!(verify_consistency(0, 0, &e, &e, &[e]).is_err());
    assert!(verify_consistency(0, 1, &e, &e, &[e]).is_err());
    assert!(verify_consistency(1, 1, &e, &e, &[e]).is_err());
}

#[test]
fn inclusion_edge_cases() {
    let leaf = leaf_hash(b"data");
    // In a one-leaf tree the root is the leaf and the proof is empty.
    verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
    assert_eq!(
        verify_inclusion(&leaf, 0, 1, &[], &empty_root()),
        Err(ProofError::RootMismatch)
    );
    for (index, size) in [(0, 0), (1, 0), (2, 1)] {
        assert_eq!(
            verify_inclusion(&leaf, index, size, &[], &leaf),
            Err(ProofError::IndexOutOfRange {
                index,
                tree_size: size
            })
        );
    }
    assert!(inclusion_proof(&[leaf], 1).is_err());
    assert!(inclusion_proof(&[], 0).is_err());
    let tree = MerkleTree::from_leaves(vec![leaf; 3]);
    assert!(tree.inclusion_proof(0, 4).is_err());
    assert!(tree.consistency_proof(2, 4).is_err());
    assert!(tree.consistency_proof(3, 2).is_err());
    assert!(tree.root_at(4).is_err());
}

fn distinct_leaves(n: usize) -> Vec<Hash> {
    (0..n as u32).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Every generated audit path verifies, and flipping any bit of it, or using it for the wrong
/// index or size, does not.
#[test]
fn generated_inclusion_proofs_verify_and_flipped_bits_fail() {
    let leaves = distinct_leaves(70);
    let tree = MerkleTree::from_leaves(leaves.clone());
    for size in 1..=70u64 {
        let prefix = &leaves[..size as usize];
        let root = root(prefix);
        assert_eq!(tree.root_at(size).unwrap(), root, "size {size}");
        for index in 0..size {
            let proof = inclusion_proof(prefix, index).unwrap();
            assert_eq!(tree.inclusion_proof(index, size).unwrap(), proof);
            let leaf = leaves[index as usize];
            verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
            assert!(verify_inclusion(&flip(&leaf, 0), index, size, &proof, &root).is_err());
            assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&root, 255)).is_err());
            if size > 1 {
                let other = (index + 1) % size;
                assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
            }
            for (i, bit) in (0..proof.len()).zip([0, 77, 255].into_iter().cycle()) {
                let mut wrong = proof.clone();
                wrong[i] = flip(&wrong[i], bit);
                assert!(verify_inclusion(&leaf, index, size, &wrong, &root).is_err());
            }
        }
    }
}

/// Every generated consistency proof verifies, and flipping any bit of it does not.
#[test]
fn generated_consistency_proofs_verify_and_flipped_bits_fail() {
    let leaves = distinct_leaves(70);
    let tree = MerkleTree::from_leaves(leaves.clone());
    for new in 1..=70u64 {
        let new_root = root(&leaves[..new as usize]);
        for old in 0..=new {
            let old_root = root(&leaves[..old as usize]);
            let proof = consistency_proof(&leaves[..new as usize], old).unwrap();
            assert_eq!(tree.consistency_proof(old, new).unwrap(), proof);
            verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
            if old > 0 && old < new {
                let wrong_root = flip(&new_root, 9);
                assert!(verify_consistency(old, new, &old_root, &wrong_root, &proof).is_err());
                for i in 0..proof.len() {
                    let mut wrong = proof.clone();
                    wrong[i] = flip(&wrong[i], 200);
                    assert!(verify_consistency(old, new, &old_root, &new_root, &wrong).is_err());
                }
            }
        }
    }
}

/// The cached tree agrees with the plain recursion on sizes where several cache levels exist.
#[test]
fn cached_tree_agrees_with_the_slice_on_larger_sizes() {
    let leaves = distinct_leaves(1100);
    let tree = MerkleTree::from_leaves(leaves.clone());
    let mut frontier = Frontier::new();
    for (i, leaf) in leaves.iter().enumerate() {
        frontier.push(*leaf);
        let size = i + 1;
        if size % 97 == 0 || size.is_power_of_two() || size == 1100 {
            let expected = root(&leaves[..size]);
            assert_eq!(tree.root_at(size as u64).unwrap(), expected);
            assert_eq!(frontier.root(), expected);
            for index in [0, size / 3, size - 1] {
                let proof = tree.inclusion_proof(index as u64, size as u64).unwrap();
                assert_eq!(
                    proof,
                    inclusion_proof(&leaves[..size], index as u64).unwrap()
                );
            }
            for old in [1, size / 2, size - 1] {
                let proof = tree.consistency_proof(old as u64, size as u64).unwrap();
                assert_eq!(
                    proof,
                    consistency_proof(&leaves[..size], old as u64).unwrap()
                );
            }
        }
    }
}
