//! Distance kernels chosen at run time for the CPU, in safe code.
//!
//! The crate forbids `unsafe`, so SIMD goes through [`pulp`], whose instruction-set tokens
//! (here [`pulp::x86::V3`]: AVX2 + FMA) can only be obtained after the CPU was checked, and
//! whose wrappers around `core::arch` are therefore safe to call.
//!
//! **Dispatch once, not per distance.** A target-feature function cannot be inlined into
//! code compiled without those features, so calling an AVX2 dot product from ordinary code
//! costs a call per distance (hnswlib pays the same through a function pointer). Instead the
//! hot loops are generic over a [`Kernel`] and marked `#[inline(always)]`; [`dispatch`]
//! checks the CPU once per operation (one search, one insert) and runs the whole operation
//! inside pulp's `#[target_feature]` trampoline, where the kernel inlines into the loops.
//! Every function between [`KernelOp::run`] and the kernel must stay `#[inline(always)]`,
//! or it is compiled without AVX2 and the intrinsics inside turn into calls.
//!
//! The [`Portable`] kernel is the autovectorised [`super::dot`], used on CPUs without AVX2
//! and FMA and on other architectures.

#[cfg(target_arch = "x86_64")]
use pulp::Simd;

/// A dot-product kernel plus a memory prefetch hint, the two things the graph search needs
/// from the CPU. Implementations are zero-sized or tiny `Copy` tokens.
pub(crate) trait Kernel: Copy {
    /// The dot product of the common prefix of `a` and `b`.
    fn dot(self, a: &[f32], b: &[f32]) -> f32;

    /// Asks the CPU to start fetching the first cache lines of `v` (a hint: no effect on
    /// results, and a no-op where unsupported).
    fn prefetch(self, v: &[f32]);

    /// Asks the CPU to start fetching the cache line holding `x[0]` (a hint, as above).
    fn prefetch_u32(self, x: &[u32]);
}

/// The portable kernel: [`super::dot`], shaped for LLVM's autovectoriser (SSE2 on x86_64),
/// and no prefetching.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

impl Kernel for Portable {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        super::dot(a, b)
    }

    #[inline(always)]
    fn prefetch(self, _v: &[f32]) {}

    #[inline(always)]
    fn prefetch_u32(self, _x: &[u32]) {}
}

/// The AVX2 + FMA kernel: 8-lane fused multiply-adds into four accumulators, a scalar tail,
/// and `prefetcht0` hints.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(pulp::x86::V3);

/// Cache lines of a vector [`Avx2::prefetch`] asks for: enough to cover 128 components.
/// The hardware's adjacent-line prefetcher tends to fetch the rest of a longer vector.
#[cfg(target_arch = "x86_64")]
const PREFETCH_LINES: usize = 8;

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        let simd = self.0;
        let n = a.len().min(b.len());
        let (a, a_tail) = pulp::x86::V3::as_simd_f32s(&a[..n]);
        let (b, b_tail) = pulp::x86::V3::as_simd_f32s(&b[..n]);
        let zero = simd.splat_f32s(0.0);
        let (mut s0, mut s1, mut s2, mut s3) = (zero, zero, zero, zero);
        // Four independent accumulators hide the FMA latency (4 cycles, 2 per cycle).
        let mut ca = a.chunks_exact(4);
        let mut cb = b.chunks_exact(4);
        for (x, y) in (&mut ca).zip(&mut cb) {
            s0 = simd.mul_add_f32s(x[0], y[0], s0);
            s1 = simd.mul_add_f32s(x[1], y[1], s1);
            s2 = simd.mul_add_f32s(x[2], y[2], s2);
            s3 = simd.mul_add_f32s(x[3], y[3], s3);
        }
        let (ra, rb) = (ca.remainder(), cb.remainder());
        if let (Some(&x), Some(&y)) = (ra.first(), rb.first()) {
            s0 = simd.mul_add_f32s(x, y, s0);
        }
        if let (Some(&x), Some(&y)) = (ra.get(1), rb.get(1)) {
            s1 = simd.mul_add_f32s(x, y, s1);
        }
        if let (Some(&x), Some(&y)) = (ra.get(2), rb.get(2)) {
            s2 = simd.mul_add_f32s(x, y, s2);
        }
        // The last 0 ..= 7 components in scalar code: pulp's masked partial load is an
        // out-of-line call, dearer than a few scalar multiply-adds.
        let mut tail = 0.0f32;
        for (x, y) in a_tail.iter().zip(b_tail) {
            tail += x * y;
        }
        let s = simd.add_f32s(simd.add_f32s(s0, s1), simd.add_f32s(s2, s3));
        simd.reduce_sum_f32s(s) + tail
    }

    #[inline(always)]
    fn prefetch(self, v: &[f32]) {
        use core::arch::x86_64::_MM_HINT_T0;
        // 16 f32 per 64-byte line. Only pointers into `v` are formed (`wrapping_add` within
        // its length), and a prefetch never faults, so this is sound for any slice.
        let p = v.as_ptr().cast::<i8>();
        let lines = v.len().div_ceil(16).min(PREFETCH_LINES);
        for l in 0..lines {
            self.0
                .sse
                ._mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(l * 64));
        }
    }

    #[inline(always)]
    fn prefetch_u32(self, x: &[u32]) {
        use core::arch::x86_64::_MM_HINT_T0;
        self.0
            .sse
            ._mm_prefetch::<_MM_HINT_T0>(x.as_ptr().cast::<i8>());
    }
}

/// An operation that runs with whichever [`Kernel`] the CPU supports.
///
/// `run` and everything it calls on the hot path must be `#[inline(always)]` (see the
/// module documentation).
pub(crate) trait KernelOp {
    /// What the operation returns.
    type Output;
    /// Runs the operation with kernel `k`.
    fn run<K: Kernel>(self, k: K) -> Self::Output;
}

/// Carries an operation into pulp's AVX2 trampoline.
#[cfg(target_arch = "x86_64")]
struct OnV3<O> {
    op: O,
    simd: pulp::x86::V3,
}

#[cfg(target_arch = "x86_64")]
impl<O: KernelOp> pulp::WithSimd for OnV3<O> {
    type Output = O::Output;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        self.op.run(Avx2(self.simd))
    }
}

/// Runs `op` with the best kernel this CPU supports (checked on every call; the check is a
/// few cached loads).
#[inline]
pub(crate) fn dispatch<O: KernelOp>(op: O) -> O::Output {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return Simd::vectorize(simd, OnV3 { op, simd });
    }
    op.run(Portable)
}

/// The dot product with the best kernel (one dispatch per call: for one-off products, not
/// for loops).
#[cfg(test)]
pub(crate) fn dot_dispatched(a: &[f32], b: &[f32]) -> f32 {
    struct Dot<'a>(&'a [f32], &'a [f32]);
    impl KernelOp for Dot<'_> {
        type Output = f32;
        #[inline(always)]
        fn run<K: Kernel>(self, k: K) -> f32 {
            k.dot(self.0, self.1)
        }
    }
    dispatch(Dot(a, b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn random(state: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((*state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The dispatched (SIMD where available) and portable kernels agree to 1e-5 relative,
    /// measured against the sum of |a_i b_i| so that cancellation cannot inflate the error.
    #[test]
    fn simd_and_scalar_dot_agree() {
        let mut st = 42u64;
        for n in (0..=70).chain([95, 96, 97, 100, 127, 128, 129, 300, 768, 1001]) {
            for _ in 0..8 {
                let a = random(&mut st, n);
                let b = random(&mut st, n);
                let scale: f64 = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| f64::from(x * y).abs())
                    .sum::<f64>()
                    .max(f64::MIN_POSITIVE);
                let exact: f64 = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| f64::from(*x) * f64::from(*y))
                    .sum();
                let simd = f64::from(dot_dispatched(&a, &b));
                let scalar = f64::from(Portable.dot(&a, &b));
                assert!(
                    (simd - scalar).abs() <= 1e-5 * scale,
                    "n={n}: {simd} vs {scalar}"
                );
                assert!(
                    (simd - exact).abs() <= 1e-5 * scale,
                    "n={n}: {simd} vs {exact}"
                );
            }
        }
    }

    /// Slices of different lengths: both kernels use the common prefix.
    #[test]
    fn dot_uses_the_common_prefix() {
        let mut st = 7u64;
        let a = random(&mut st, 37);
        let b = random(&mut st, 21);
        let d = dot_dispatched(&a, &b);
        let p = Portable.dot(&a[..21], &b);
        assert!((d - p).abs() < 1e-5, "{d} vs {p}");
    }

    /// On x86_64 with AVX2 + FMA the SIMD kernel itself is what [`dispatch`] picks, so the
    /// agreement test above really compares two different code paths.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernel_is_used_when_available() {
        struct Which;
        impl KernelOp for Which {
            type Output = &'static str;
            fn run<K: Kernel>(self, _k: K) -> &'static str {
                std::any::type_name::<K>()
            }
        }
        let name = dispatch(Which);
        if pulp::x86::V3::is_available() {
            assert!(name.ends_with("Avx2"), "{name}");
            // Prefetching is only a hint; it must accept any slice, empty included.
            let simd = pulp::x86::V3::try_new().unwrap();
            Avx2(simd).prefetch(&[]);
            Avx2(simd).prefetch(&[1.0; 300]);
            Avx2(simd).prefetch_u32(&[]);
        } else {
            assert!(name.ends_with("Portable"), "{name}");
        }
    }
}
