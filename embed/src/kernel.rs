//! The matrix products: 4-bit weights × 8-bit activations, with one scale per block of 32
//! on each side (the recipe the weights were published with), for all the tokens of a
//! group at once.
//!
//! Layout. A weight matrix is cut into panels of 16 output rows. Within a panel, for each
//! block of 32 columns, the 32 weights of each row are stored as 8 groups of 4 columns, and
//! a group holds its 4 columns for the 16 rows together: 64 bytes, one weight a byte (its
//! stored value, weight + 8, in 0..=15). So one 64-byte load, multiplied with a token's 4
//! activations broadcast to every lane, gives 16 rows × 4 columns of products summed per
//! row: exactly what `vpdpbusd` (unsigned bytes × signed bytes, 4 products into each i32
//! lane) does, with no horizontal sums anywhere. Per block, each lane's i32 sum becomes f32
//! and is added with the product of the two scales.
//!
//! Each kernel works on a tile of output panels × tokens, so that a weight vector, once
//! loaded, serves several tokens, and a token's broadcast activations serve several panels;
//! the loop over tiles goes panel by panel, so a panel's weights stay in the nearest caches
//! while every token of the group passes through them.
//!
//! Kernels, chosen at run time ([`Kernel::best`]), all on the same layout and giving the same
//! sums (integer arithmetic, then the same float operations per block):
//! - `Avx512Vnni`: 512-bit `vpdpbusd` (AVX-512 VNNI), 16 rows per instruction;
//! - `AvxVnni`: 256-bit `vpdpbusd` (AVX-VNNI), 8 rows per instruction;
//! - `Avx2`: the same with `vpmaddubsw` + `vpmaddwd` (no VNNI; the pairs cannot saturate,
//!   as 2 × 15 × 128 < 32,767);
//! - `NeonDot`: 128-bit `sdot` (Armv8.2's dot-product extension: AWS Graviton2 on), 4 rows
//!   per instruction. `sdot` multiplies signed bytes by signed bytes, and the stored weights
//!   (0..=15) are the same bytes read as signed;
//! - `Portable`: plain Rust over the same layout, written so that the compiler vectorises
//!   it for the target (SSE2 on x86-64, NEON on arm64).
//!
//! The AVX-512 and AVX-VNNI intrinsics are stable from Rust 1.89; with an older compiler
//! (the workspace builds from 1.88) the build script leaves them out and AVX2 is the best.

use crate::format::BLOCK;

/// Output rows per panel.
pub(crate) const PANEL: usize = 16;
/// Columns per group: what one i32 lane of `vpdpbusd` sums.
const GROUP: usize = 4;
/// Groups per block.
const GROUPS: usize = BLOCK / GROUP;

/// Which code computes the matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 with VNNI (512-bit integer dot products).
    Avx512Vnni,
    /// AVX2 with AVX-VNNI (256-bit integer dot products).
    AvxVnni,
    /// AVX2 and FMA.
    Avx2,
    /// 64-bit Arm with the dot-product instructions.
    NeonDot,
    /// Plain Rust, for any CPU.
    Portable,
}

/// Whether this CPU has the x86-64 feature (one a kernel names in `x86_features`).
#[cfg(target_arch = "x86_64")]
fn x86_has(feature: &str) -> bool {
    match feature {
        "avx2" => std::arch::is_x86_feature_detected!("avx2"),
        "fma" => std::arch::is_x86_feature_detected!("fma"),
        "avxvnni" => std::arch::is_x86_feature_detected!("avxvnni"),
        "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
        "avx512bw" => std::arch::is_x86_feature_detected!("avx512bw"),
        "avx512vnni" => std::arch::is_x86_feature_detected!("avx512vnni"),
        _ => false,
    }
}

impl Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Kernel; 5] = [
        Kernel::Avx512Vnni,
        Kernel::AvxVnni,
        Kernel::Avx2,
        Kernel::NeonDot,
        Kernel::Portable,
    ];

    /// Whether this CPU (and this build) can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(all(target_arch = "x86_64", embed_avx512))]
            Kernel::Avx512Vnni | Kernel::AvxVnni => self.runs_on(x86_has),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => self.runs_on(x86_has),
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The x86-64 features the kernel needs. Every kernel but the portable one needs AVX2
    /// and FMA besides its own: `Encoder::forward` runs the work around the matrix products
    /// compiled for them whatever the kernel.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn x86_features(self) -> &'static [&'static str] {
        match self {
            Kernel::Avx512Vnni => &["avx2", "fma", "avx512f", "avx512bw", "avx512vnni"],
            Kernel::AvxVnni => &["avx2", "fma", "avxvnni"],
            Kernel::Avx2 => &["avx2", "fma"],
            Kernel::NeonDot | Kernel::Portable => &[],
        }
    }

    /// Whether a CPU that has the x86-64 features `has` says can run the kernel.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn runs_on(self, has: impl Fn(&str) -> bool) -> bool {
        !self.x86_features().is_empty() && self.x86_features().iter().all(|f| has(f))
    }

    /// The fastest kernel this CPU can run.
    pub fn best() -> Kernel {
        Kernel::ALL
            .into_iter()
            .find(|k| k.is_available())
            .unwrap_or(Kernel::Portable)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512Vnni => "avx512-vnni",
            Kernel::AvxVnni => "avx-vnni",
            Kernel::Avx2 => "avx2",
            Kernel::NeonDot => "neon-dotprod",
            Kernel::Portable => "portable",
        }
    }
}

/// A 4-bit matrix (rows × cols, applied as `x · Wᵀ + b`) in the panel layout above.
pub(crate) struct Linear {
    pub rows: usize,
    pub cols: usize,
    /// Stored weights (weight + 8), one a byte, panel by panel, block by block, group by
    /// group, row by row: `((panel × blocks + block) × 8 + group) × 64 + row × 4 + column`.
    weights: Vec<u8>,
    /// The scales, `(panel × blocks + block) × 16 + row`.
    scales: Vec<f32>,
    bias: Vec<f32>,
}

impl Linear {
    /// From row-major stored weights (`rows × cols` bytes in 0..=15) and row-major block
    /// scales (`rows × cols / 32`). `rows` must be a multiple of 16 and `cols` of 32.
    pub fn new(rows: usize, cols: usize, stored: &[u8], scales: &[f32], bias: Vec<f32>) -> Self {
        assert!(rows.is_multiple_of(PANEL) && cols.is_multiple_of(BLOCK));
        assert!(stored.len() == rows * cols && scales.len() == rows * cols / BLOCK);
        assert!(bias.len() == rows);
        let blocks = cols / BLOCK;
        let mut weights = vec![0u8; rows * cols];
        let mut packed_scales = vec![0f32; rows * blocks];
        for row in 0..rows {
            let (panel, r) = (row / PANEL, row % PANEL);
            for col in 0..cols {
                let (block, g, j) = (col / BLOCK, col % BLOCK / GROUP, col % GROUP);
                let at = ((panel * blocks + block) * GROUPS + g) * PANEL * GROUP + r * GROUP + j;
                weights[at] = stored[row * cols + col];
            }
            for block in 0..blocks {
                packed_scales[(panel * blocks + block) * PANEL + r] = scales[row * blocks + block];
            }
        }
        Linear {
            rows,
            cols,
            weights,
            scales: packed_scales,
            bias,
        }
    }

    fn blocks(&self) -> usize {
        self.cols / BLOCK
    }

    /// The stored weight of `row` and `col` (for tests).
    #[cfg(test)]
    fn stored(&self, row: usize, col: usize) -> u8 {
        let blocks = self.blocks();
        let (panel, r) = (row / PANEL, row % PANEL);
        let (block, g, j) = (col / BLOCK, col % BLOCK / GROUP, col % GROUP);
        self.weights[((panel * blocks + block) * GROUPS + g) * PANEL * GROUP + r * GROUP + j]
    }

    #[cfg(test)]
    fn scale(&self, row: usize, block: usize) -> f32 {
        self.scales[(row / PANEL * self.blocks() + block) * PANEL + row % PANEL]
    }

    /// `y = x · Wᵀ + b` for every token of `x` (`y`: tokens × rows, row-major).
    pub fn apply(&self, kernel: Kernel, x: &Quantized, y: &mut [f32]) {
        let tokens = x.tokens;
        assert!(
            x.cols == self.cols && y.len() == tokens * self.rows,
            "a {}×{} matrix applied to {} tokens of {} into {}",
            self.rows,
            self.cols,
            tokens,
            x.cols,
            y.len()
        );
        match kernel {
            #[cfg(all(target_arch = "x86_64", embed_avx512))]
            Kernel::Avx512Vnni if kernel.is_available() => {
                // SAFETY: the CPU has AVX-512 F, BW and VNNI (checked just above, and the
                // detection is cached); the shapes were checked above and at construction.
                unsafe { avx512::apply(self, x, y) }
            }
            #[cfg(all(target_arch = "x86_64", embed_avx512))]
            Kernel::AvxVnni if kernel.is_available() => {
                // SAFETY: as above, for AVX2, FMA and AVX-VNNI.
                unsafe { avx2::apply_vnni(self, x, y) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if kernel.is_available() => {
                // SAFETY: as above, for AVX2 and FMA.
                unsafe { avx2::apply(self, x, y) }
            }
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot if kernel.is_available() => {
                // SAFETY: as above, for the dot-product instructions (NEON is always there).
                unsafe { neon::apply(self, x, y) }
            }
            _ => portable(self, x, y),
        }
    }
}

/// Activations quantised to 8 bits per block of 32, token by token: the values, each
/// block's scale, and −8 × each block's sum of values (what the stored weights' offset of 8
/// adds to a dot product, taken away by starting the block's sum there).
#[derive(Default)]
pub(crate) struct Quantized {
    tokens: usize,
    cols: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    offsets: Vec<i32>,
}

impl Quantized {
    /// Quantises `x`, `cols` values a token. (Inlined into the encoder's AVX2 build.)
    #[inline(always)]
    pub fn quantize(&mut self, x: &[f32], cols: usize) {
        assert!(cols.is_multiple_of(BLOCK) && x.len().is_multiple_of(cols));
        let blocks = x.len() / BLOCK;
        self.tokens = x.len() / cols;
        self.cols = cols;
        self.values.resize(x.len(), 0);
        self.scales.resize(blocks, 0.0);
        self.offsets.resize(blocks, 0);
        for (b, (xs, qs)) in x
            .chunks_exact(BLOCK)
            .zip(self.values.chunks_exact_mut(BLOCK))
            .enumerate()
        {
            // Lane by lane, so that it vectorises.
            let mut lanes = [0f32; 8];
            for chunk in xs.chunks_exact(8) {
                for (m, v) in lanes.iter_mut().zip(chunk) {
                    let a = v.abs();
                    *m = if a > *m { a } else { *m };
                }
            }
            let max = lanes
                .into_iter()
                .fold(0f32, |m, v| if v > m { v } else { m });
            let scale = max / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut sum = 0i32;
            for (x, q) in xs.iter().zip(qs.iter_mut()) {
                let v = round_even_to_int(x * inverse).clamp(-128, 127);
                *q = v as i8;
                sum += v;
            }
            self.scales[b] = scale;
            self.offsets[b] = -8 * sum;
        }
    }
}

/// Rounds half to even, to an integer, for |x| well under 2^22 (here at most 127.5, or NaN
/// for a NaN input, which gives some integer): adding 1.5 × 2^23 leaves no bits below the
/// point, the addition rounds to even, and the integer is then the low bits of the sum.
/// Unlike `round_ties_even() as i32`, this is plain arithmetic, so it vectorises.
#[inline(always)]
fn round_even_to_int(x: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    ((x + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// Tokens per tile in the portable kernel.
const PORTABLE_TOKENS: usize = 4;

/// Any CPU: one panel and up to four tokens at a time. A group's 64 stored weights times
/// the token's 4 activations (repeated) are summed position by position in i16, which the
/// compiler turns into 8- or 16-lane vector instructions (SSE2, AVX2, NEON); at the end of
/// a block the 4 positions of each row are added up. i16 cannot overflow: a position sums
/// 8 products of at most 15 × 128, 15,360 in all.
fn portable(w: &Linear, x: &Quantized, y: &mut [f32]) {
    let (rows, cols, blocks) = (w.rows, w.cols, w.blocks());
    let group_bytes = PANEL * GROUP;
    for panel in 0..rows / PANEL {
        let pw = &w.weights[panel * blocks * BLOCK * PANEL..(panel + 1) * blocks * BLOCK * PANEL];
        let ps = &w.scales[panel * blocks * PANEL..(panel + 1) * blocks * PANEL];
        let bias = &w.bias[panel * PANEL..(panel + 1) * PANEL];
        let mut t0 = 0;
        while t0 < x.tokens {
            let n = (x.tokens - t0).min(PORTABLE_TOKENS);
            let mut acc = [[0f32; PANEL]; PORTABLE_TOKENS];
            for b in 0..blocks {
                let bw = &pw[b * BLOCK * PANEL..(b + 1) * BLOCK * PANEL];
                let ws = &ps[b * PANEL..(b + 1) * PANEL];
                for (t, acc) in acc.iter_mut().enumerate().take(n) {
                    let token = t0 + t;
                    let xb = &x.values[token * cols + b * BLOCK..token * cols + (b + 1) * BLOCK];
                    // Eight vectors of 8 lanes: rows 2c and 2c + 1, 4 columns each.
                    let mut sums = [[0i16; 8]; 8];
                    for (gw, xg) in bw.chunks_exact(group_bytes).zip(xb.chunks_exact(GROUP)) {
                        let xr =
                            [xg[0], xg[1], xg[2], xg[3], xg[0], xg[1], xg[2], xg[3]].map(i16::from);
                        for (s, wc) in sums.iter_mut().zip(gw.chunks_exact(8)) {
                            let wc: [u8; 8] = wc.try_into().unwrap_or_default();
                            for l in 0..8 {
                                s[l] += i16::from(wc[l]) * xr[l];
                            }
                        }
                    }
                    let offset = x.offsets[token * blocks + b];
                    let xs = x.scales[token * blocks + b];
                    let sums = sums.as_flattened();
                    for ((a, s), w) in acc.iter_mut().zip(sums.chunks_exact(GROUP)).zip(ws) {
                        let dot = offset
                            + i32::from(s[0])
                            + i32::from(s[1])
                            + i32::from(s[2])
                            + i32::from(s[3]);
                        *a += dot as f32 * (w * xs);
                    }
                }
            }
            for (t, a) in acc.iter().enumerate().take(n) {
                let out = &mut y[(t0 + t) * rows + panel * PANEL..][..PANEL];
                for ((o, a), b) in out.iter_mut().zip(a).zip(bias) {
                    *o = a + b;
                }
            }
            t0 += n;
        }
    }
}

/// Checks, once per call, what the unchecked loads of a SIMD kernel rely on.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn check_shapes(w: &Linear, x: &Quantized, y: &[f32]) {
    let blocks = w.blocks();
    assert!(
        w.rows.is_multiple_of(PANEL)
            && w.cols.is_multiple_of(BLOCK)
            && w.weights.len() == w.rows * w.cols
            && w.scales.len() == w.rows * blocks
            && w.bias.len() == w.rows
            && x.cols == w.cols
            && x.values.len() >= x.tokens * w.cols
            && x.scales.len() >= x.tokens * blocks
            && x.offsets.len() >= x.tokens * blocks
            && y.len() >= x.tokens * w.rows
    );
}

/// Runs `tile(panel, first token, tokens)` over a product's tiles of one panel × at most
/// `most` tokens, panel by panel, so that a panel's weights stay in the nearest caches while
/// every token passes through them.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn panel_tiles(
    panels: usize,
    tokens: usize,
    most: usize,
    mut tile: impl FnMut(usize, usize, usize),
) {
    for p in 0..panels {
        let mut t = 0;
        while t < tokens {
            let n = (tokens - t).min(most);
            tile(p, t, n);
            t += n;
        }
    }
}

/// Raw views of a product's operands, with the index arithmetic of the layout. Every
/// offset the kernels compute is within the lengths [`check_shapes`] asserted, for
/// `panel < rows / 16`, `token < tokens`, `block < cols / 32` and `group < 8`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
struct Operands {
    weights: *const u8,
    scales: *const f32,
    bias: *const f32,
    values: *const i8,
    x_scales: *const f32,
    offsets: *const i32,
    y: *mut f32,
    rows: usize,
    cols: usize,
    blocks: usize,
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl Operands {
    fn new(w: &Linear, x: &Quantized, y: &mut [f32]) -> Operands {
        check_shapes(w, x, y);
        Operands {
            weights: w.weights.as_ptr(),
            scales: w.scales.as_ptr(),
            bias: w.bias.as_ptr(),
            values: x.values.as_ptr(),
            x_scales: x.scales.as_ptr(),
            offsets: x.offsets.as_ptr(),
            y: y.as_mut_ptr(),
            rows: w.rows,
            cols: w.cols,
            blocks: w.blocks(),
        }
    }
    /// The 64 bytes of a panel's block's group.
    #[inline(always)]
    unsafe fn weights(&self, panel: usize, block: usize, group: usize) -> *const u8 {
        self.weights
            .add(((panel * self.blocks + block) * GROUPS + group) * PANEL * GROUP)
    }
    /// The 16 scales of a panel's block.
    #[inline(always)]
    unsafe fn scales(&self, panel: usize, block: usize) -> *const f32 {
        self.scales.add((panel * self.blocks + block) * PANEL)
    }
    /// A token's 4 activations of a block's group, as one i32.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn activations(&self, token: usize, block: usize, group: usize) -> i32 {
        self.values
            .add(token * self.cols + block * BLOCK + group * GROUP)
            .cast::<i32>()
            .read_unaligned()
    }
    /// A token's 32 activations of a block.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn block_activations(&self, token: usize, block: usize) -> *const i8 {
        self.values.add(token * self.cols + block * BLOCK)
    }
    #[inline(always)]
    unsafe fn x_scale(&self, token: usize, block: usize) -> f32 {
        *self.x_scales.add(token * self.blocks + block)
    }
    #[inline(always)]
    unsafe fn offset(&self, token: usize, block: usize) -> i32 {
        *self.offsets.add(token * self.blocks + block)
    }
    /// Where a token's 16 outputs of a panel go.
    #[inline(always)]
    unsafe fn out(&self, token: usize, panel: usize) -> *mut f32 {
        self.y.add(token * self.rows + panel * PANEL)
    }
}

/// 512-bit kernel: tiles of 2 panels (32 rows) × 4 tokens, 8 i32 and 8 f32 accumulators.
// Built only by compilers that have these intrinsics (1.89 on; see build.rs).
#[cfg(all(target_arch = "x86_64", embed_avx512))]
// Indexed loops over the tile's small arrays read as the tile's shape.
#[allow(clippy::incompatible_msrv, clippy::needless_range_loop)]
mod avx512 {
    use super::{Linear, Operands, Quantized, GROUPS, PANEL};
    use std::arch::x86_64::*;

    const PANELS: usize = 2;
    const TOKENS: usize = 4;

    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn apply(w: &Linear, x: &Quantized, y: &mut [f32]) {
        let o = Operands::new(w, x, y);
        let panels = w.rows / PANEL;
        let mut p = 0;
        while p < panels {
            let np = (panels - p).min(PANELS);
            let mut t = 0;
            while t < x.tokens {
                let nt = (x.tokens - t).min(TOKENS);
                // SAFETY: p + np ≤ panels and t + nt ≤ tokens.
                match (np, nt) {
                    (2, 4) => tile::<2, 4>(&o, p, t),
                    (2, 3) => tile::<2, 3>(&o, p, t),
                    (2, 2) => tile::<2, 2>(&o, p, t),
                    (2, _) => tile::<2, 1>(&o, p, t),
                    (_, 4) => tile::<1, 4>(&o, p, t),
                    (_, 3) => tile::<1, 3>(&o, p, t),
                    (_, 2) => tile::<1, 2>(&o, p, t),
                    _ => tile::<1, 1>(&o, p, t),
                }
                t += nt;
            }
            p += np;
        }
    }

    /// Panels `p..p + P` for tokens `t..t + T`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const P: usize, const T: usize>(o: &Operands, p: usize, t: usize) {
        let mut acc = [[_mm512_setzero_ps(); T]; P];
        for b in 0..o.blocks {
            let mut sums = [[_mm512_setzero_si512(); T]; P];
            for j in 0..T {
                let start = _mm512_set1_epi32(o.offset(t + j, b));
                for s in sums.iter_mut() {
                    s[j] = start;
                }
            }
            for g in 0..GROUPS {
                let mut xv = [_mm512_setzero_si512(); T];
                for (j, v) in xv.iter_mut().enumerate() {
                    *v = _mm512_set1_epi32(o.activations(t + j, b, g));
                }
                for (i, s) in sums.iter_mut().enumerate() {
                    let wv = _mm512_loadu_si512(o.weights(p + i, b, g).cast());
                    for j in 0..T {
                        s[j] = _mm512_dpbusd_epi32(s[j], wv, xv[j]);
                    }
                }
            }
            for i in 0..P {
                let ws = _mm512_loadu_ps(o.scales(p + i, b));
                for j in 0..T {
                    let scale = _mm512_mul_ps(ws, _mm512_set1_ps(o.x_scale(t + j, b)));
                    acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[i][j]), scale, acc[i][j]);
                }
            }
        }
        for i in 0..P {
            let bias = _mm512_loadu_ps(o.bias.add((p + i) * PANEL));
            for j in 0..T {
                _mm512_storeu_ps(o.out(t + j, p + i), _mm512_add_ps(acc[i][j], bias));
            }
        }
    }
}

/// 256-bit kernels: a panel is two vectors of 8 rows; tiles of 1 panel × 3 tokens, 6 i32
/// and 6 f32 accumulators (AVX2 has 16 vector registers).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod avx2 {
    use super::{panel_tiles, Linear, Operands, Quantized, GROUPS, PANEL};
    use std::arch::x86_64::*;

    const TOKENS: usize = 3;

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn apply(w: &Linear, x: &Quantized, y: &mut [f32]) {
        let o = Operands::new(w, x, y);
        panel_tiles(w.rows / PANEL, x.tokens, TOKENS, |p, t, nt| match nt {
            3 => tile::<3>(&o, p, t),
            2 => tile::<2>(&o, p, t),
            _ => tile::<1>(&o, p, t),
        });
    }

    /// Unsigned bytes × signed bytes, four products summed into each i32 lane, added to
    /// `acc`: `vpdpbusd` without VNNI.
    #[inline(always)]
    unsafe fn dot(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(w, x);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const T: usize>(o: &Operands, p: usize, t: usize) {
        tile_with::<T>(o, p, t, |acc, w, x| dot(acc, w, x))
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and AVX-VNNI.
    #[cfg(embed_avx512)]
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(super) unsafe fn apply_vnni(w: &Linear, x: &Quantized, y: &mut [f32]) {
        let o = Operands::new(w, x, y);
        panel_tiles(w.rows / PANEL, x.tokens, TOKENS, |p, t, nt| match nt {
            3 => tile_vnni::<3>(&o, p, t),
            2 => tile_vnni::<2>(&o, p, t),
            _ => tile_vnni::<1>(&o, p, t),
        });
    }

    #[cfg(embed_avx512)]
    #[allow(clippy::incompatible_msrv)] // built from Rust 1.89 only (build.rs)
    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn tile_vnni<const T: usize>(o: &Operands, p: usize, t: usize) {
        tile_with::<T>(o, p, t, |acc, w, x| _mm256_dpbusd_avx_epi32(acc, w, x))
    }

    /// One panel (two halves of 8 rows) for tokens `t..t + T`, with `dot` as the integer
    /// dot product. Inlined into each caller, so it takes on the caller's features.
    #[inline(always)]
    unsafe fn tile_with<const T: usize>(
        o: &Operands,
        p: usize,
        t: usize,
        dot: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
    ) {
        let mut acc = [[_mm256_setzero_ps(); T]; 2];
        for b in 0..o.blocks {
            let mut sums = [[_mm256_setzero_si256(); T]; 2];
            for j in 0..T {
                let start = _mm256_set1_epi32(o.offset(t + j, b));
                sums[0][j] = start;
                sums[1][j] = start;
            }
            for g in 0..GROUPS {
                let at = o.weights(p, b, g);
                let w0 = _mm256_loadu_si256(at.cast());
                let w1 = _mm256_loadu_si256(at.add(32).cast());
                for j in 0..T {
                    let xv = _mm256_set1_epi32(o.activations(t + j, b, g));
                    sums[0][j] = dot(sums[0][j], w0, xv);
                    sums[1][j] = dot(sums[1][j], w1, xv);
                }
            }
            let ws = o.scales(p, b);
            for (h, (acc, sums)) in acc.iter_mut().zip(&sums).enumerate() {
                let ws = _mm256_loadu_ps(ws.add(h * 8));
                for j in 0..T {
                    let scale = _mm256_mul_ps(ws, _mm256_set1_ps(o.x_scale(t + j, b)));
                    acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[j]), scale, acc[j]);
                }
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            let bias = _mm256_loadu_ps(o.bias.add(p * PANEL + h * 8));
            for (j, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.out(t + j, p).add(h * 8), _mm256_add_ps(*a, bias));
            }
        }
    }
}

/// 128-bit Arm kernel: a panel is four vectors of 4 rows; tiles of 1 panel × 3 tokens, 12
/// i32 and 12 f32 accumulators, with the tokens' activations for 4 groups (one vector a
/// token, a group's 4 activations a lane, which `sdot` by element reads) and one weight
/// vector (28 of NEON's 32 registers).
#[cfg(target_arch = "aarch64")]
#[allow(clippy::needless_range_loop)]
mod neon {
    use super::{panel_tiles, Linear, Operands, Quantized, GROUPS, PANEL};
    use std::arch::aarch64::*;
    use std::arch::asm;

    const TOKENS: usize = 3;
    /// Vectors of 4 rows in a panel.
    const QUARTERS: usize = PANEL / 4;

    /// # Safety
    /// The CPU must have the dot-product instructions.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn apply(w: &Linear, x: &Quantized, y: &mut [f32]) {
        let o = Operands::new(w, x, y);
        panel_tiles(w.rows / PANEL, x.tokens, TOKENS, |p, t, nt| match nt {
            3 => tile::<3>(&o, p, t),
            2 => tile::<2>(&o, p, t),
            _ => tile::<1>(&o, p, t),
        });
    }

    /// Four products of signed bytes summed into each i32 lane of `acc`: `w`'s 4 bytes of
    /// that lane times `x`'s 4 bytes of lane `L` (`sdot` by element, whose intrinsic is not
    /// stable yet).
    #[inline(always)]
    unsafe fn dot<const L: i32>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{lane}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            lane = const L,
            options(pure, nomem, nostack, preserves_flags),
        );
        acc
    }

    /// Group `g` of block `b` for every token of the tile, whose activations for the group
    /// are lane `L` of `xv`.
    #[inline(always)]
    unsafe fn group<const L: i32, const T: usize>(
        o: &Operands,
        p: usize,
        b: usize,
        g: usize,
        xv: &[int8x16_t; T],
        sums: &mut [[int32x4_t; T]; QUARTERS],
    ) {
        let at = o.weights(p, b, g);
        for (q, sums) in sums.iter_mut().enumerate() {
            let wv = vreinterpretq_s8_u8(vld1q_u8(at.add(q * 16)));
            for j in 0..T {
                sums[j] = dot::<L>(sums[j], wv, xv[j]);
            }
        }
    }

    /// One panel for tokens `t..t + T`.
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn tile<const T: usize>(o: &Operands, p: usize, t: usize) {
        let mut acc = [[vdupq_n_f32(0.0); T]; QUARTERS];
        for b in 0..o.blocks {
            let mut sums = [[vdupq_n_s32(0); T]; QUARTERS];
            for j in 0..T {
                let start = vdupq_n_s32(o.offset(t + j, b));
                for s in sums.iter_mut() {
                    s[j] = start;
                }
            }
            // Each half of the block: 16 activations a token, one vector, whose four lanes
            // are the four groups' activations.
            for half in 0..GROUPS / 4 {
                let mut xv = [vdupq_n_s8(0); T];
                for (j, v) in xv.iter_mut().enumerate() {
                    *v = vld1q_s8(o.block_activations(t + j, b).add(half * 16));
                }
                let g = half * 4;
                group::<0, T>(o, p, b, g, &xv, &mut sums);
                group::<1, T>(o, p, b, g + 1, &xv, &mut sums);
                group::<2, T>(o, p, b, g + 2, &xv, &mut sums);
                group::<3, T>(o, p, b, g + 3, &xv, &mut sums);
            }
            let ws = o.scales(p, b);
            for q in 0..QUARTERS {
                let ws = vld1q_f32(ws.add(q * 4));
                for j in 0..T {
                    let scale = vmulq_n_f32(ws, o.x_scale(t + j, b));
                    acc[q][j] = vfmaq_f32(acc[q][j], vcvtq_f32_s32(sums[q][j]), scale);
                }
            }
        }
        for q in 0..QUARTERS {
            let bias = vld1q_f32(o.bias.add(p * PANEL + q * 4));
            for j in 0..T {
                vst1q_f32(o.out(t + j, p).add(q * 4), vaddq_f32(acc[q][j], bias));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little generator, so the tests need no crate.
    fn numbers() -> impl FnMut() -> u64 {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    #[test]
    fn every_kernel_gives_the_float_product_of_the_dequantised_values() {
        let mut next = numbers();
        // Shapes with panels and tokens left over from the tiles (3 panels, 1 to 7 tokens).
        for (rows, cols, tokens) in [(48, 384, 7), (32, 1536, 5), (16, 64, 1), (48, 96, 2)] {
            let stored: Vec<u8> = (0..rows * cols).map(|_| (next() % 16) as u8).collect();
            let scales: Vec<f32> = (0..rows * cols / BLOCK)
                .map(|_| (next() % 1000) as f32 / 1e4)
                .collect();
            let bias: Vec<f32> = (0..rows).map(|i| i as f32 / 7.0).collect();
            let w = Linear::new(rows, cols, &stored, &scales, bias.clone());
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(w.stored(r, c), stored[r * cols + c]);
                }
                assert_eq!(w.scale(r, 1), scales[r * cols / BLOCK + 1]);
            }
            let x: Vec<f32> = (0..tokens * cols)
                .map(|_| (next() % 2001) as f32 / 100.0 - 10.0)
                .collect();
            let mut q = Quantized::default();
            q.quantize(&x, cols);
            let exact: Vec<f32> = (0..tokens * rows)
                .map(|i| {
                    let (t, o) = (i / rows, i % rows);
                    (0..cols)
                        .map(|c| {
                            let b = c / BLOCK;
                            let wv = (f32::from(stored[o * cols + c]) - 8.0)
                                * scales[o * cols / BLOCK + b];
                            let xv =
                                f32::from(q.values[t * cols + c]) * q.scales[t * cols / BLOCK + b];
                            wv * xv
                        })
                        .sum::<f32>()
                        + bias[o]
                })
                .collect();
            let mut tested = 0;
            for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let mut y = vec![f32::NAN; tokens * rows];
                w.apply(kernel, &q, &mut y);
                for (got, want) in y.iter().zip(&exact) {
                    assert!(
                        (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                        "{}: {got} against {want} ({rows}×{cols}, {tokens} tokens)",
                        kernel.name()
                    );
                }
                tested += 1;
            }
            assert!(tested >= 1);
        }
    }

    /// Every x86-64 kernel needs AVX2 and FMA besides its own features (the encoder's
    /// element-wise work is compiled for them): a CPU with AVX-512 VNNI but without FMA (or
    /// AVX2) runs none of them.
    #[test]
    fn every_x86_kernel_needs_avx2_and_fma() {
        let all = |_: &str| true;
        for kernel in [Kernel::Avx512Vnni, Kernel::AvxVnni, Kernel::Avx2] {
            assert!(kernel.runs_on(all), "{}", kernel.name());
            for missing in ["avx2", "fma"] {
                assert!(
                    !kernel.runs_on(|f| f != missing),
                    "{} without {missing}",
                    kernel.name()
                );
            }
            for own in kernel.x86_features() {
                assert!(
                    !kernel.runs_on(|f| f != *own),
                    "{} without {own}",
                    kernel.name()
                );
            }
        }
        assert!(!Kernel::Portable.runs_on(all) && !Kernel::NeonDot.runs_on(all));
    }

    #[test]
    fn the_best_kernel_is_available_and_portable_always_is() {
        assert!(Kernel::best().is_available());
        assert!(Kernel::Portable.is_available());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            assert_ne!(Kernel::best(), Kernel::Portable);
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            assert_eq!(Kernel::best(), Kernel::NeonDot);
        }
    }

    #[test]
    fn rounding_to_even() {
        for (x, want) in [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (127.4, 127),
        ] {
            assert_eq!(round_even_to_int(x), want, "{x}");
        }
        for i in -1000..=1000 {
            let x = i as f32 / 7.9;
            assert_eq!(round_even_to_int(x), x.round_ties_even() as i32, "{x}");
        }
    }

    #[test]
    fn quantised_activations_round_to_even_and_keep_block_sums() {
        let mut x = vec![0f32; 64];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = 1.5;
        x[3] = -127.0;
        x[40] = -3.0;
        let mut q = Quantized::default();
        q.quantize(&x, 64);
        assert_eq!(&q.values[..4], &[127, 0, 2, -127]);
        assert_eq!(q.values[40], -127);
        assert_eq!(q.offsets, vec![-16, 8 * 127]);
        assert_eq!(q.scales, vec![1.0, 3.0 / 127.0]);
    }
}
