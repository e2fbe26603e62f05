//! The encoder: XLM-R's embeddings and 12 BERT layers (self-attention, a GELU feed-forward
//! block, post-layer-norm), then the mean of the last layer's token vectors, L2-normalised.
//!
//! The weight matrices stay 4-bit, expanded once at load to one byte per weight (their
//! stored value, weight + 8) beside one scale per block of 32. Before each matrix product
//! the activations are quantised the same way, to 8 bits per value with one scale per block
//! of 32, so the inner loop is an integer dot product of 32 bytes: with AVX2 a handful of
//! instructions. This is the numerical recipe the weights were published with, so the
//! vectors match the reference package's, and it is what makes one query take milliseconds.
//!
//! Texts longer than the model's 512 positions are cut into windows; a text's vector is the
//! mean over its windows, weighted by their lengths.

use crate::format::{f16_to_f32, File, BLOCK, BLOCK_BYTES};
use crate::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// About this many tokens go through the layers together in a batch: enough that each
/// weight matrix is read once for many texts, few enough that activations stay in cache.
const GROUP_TOKENS: usize = 256;

/// A 4-bit matrix (rows × cols, applied as `x · Wᵀ + b`), expanded for the integer kernel.
struct Linear {
    rows: usize,
    cols: usize,
    /// Stored nibbles (weight + 8), one byte each, row-major.
    weights: Vec<u8>,
    /// One scale per row and block.
    scales: Vec<f32>,
    bias: Vec<f32>,
}

impl Linear {
    fn load(file: &File, name: &str, rows: usize, cols: usize) -> Result<Linear> {
        let data = file.q4(&format!("{name}.w"), rows * cols)?;
        let mut weights = vec![0u8; rows * cols];
        let mut scales = Vec::with_capacity(rows * cols / BLOCK);
        for (block, out) in data
            .chunks_exact(BLOCK_BYTES)
            .zip(weights.chunks_exact_mut(BLOCK))
        {
            scales.push(f16_to_f32(u16::from_le_bytes([block[0], block[1]])));
            for (j, b) in block[2..].iter().enumerate() {
                out[j] = b & 0x0f;
                out[j + 16] = b >> 4;
            }
        }
        Ok(Linear {
            rows,
            cols,
            weights,
            scales,
            bias: file.f32(&format!("{name}.b"), rows)?,
        })
    }
}

struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl LayerNorm {
    fn load(file: &File, name: &str, n: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: file.f32(&format!("{name}.w"), n)?,
            bias: file.f32(&format!("{name}.b"), n)?,
        })
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    attention_norm: LayerNorm,
    up: Linear,
    down: Linear,
    output_norm: LayerNorm,
}

/// Activations quantised to 8 bits per block of 32: values, scales, and 8 × each block's
/// sum (what the stored weights' offset of 8 adds to a dot product).
#[derive(Default)]
struct Quantized {
    values: Vec<i8>,
    scales: Vec<f32>,
    offsets: Vec<f32>,
}

impl Quantized {
    fn quantize(&mut self, x: &[f32]) {
        let blocks = x.len() / BLOCK;
        self.values.resize(x.len(), 0);
        self.scales.resize(blocks, 0.0);
        self.offsets.resize(blocks, 0.0);
        for (b, (xs, qs)) in x
            .chunks_exact(BLOCK)
            .zip(self.values.chunks_exact_mut(BLOCK))
            .enumerate()
        {
            let max = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = max / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut sum = 0i32;
            for (x, q) in xs.iter().zip(qs.iter_mut()) {
                let v = round_even(x * inverse).clamp(-128.0, 127.0) as i32;
                *q = v as i8;
                sum += v;
            }
            self.scales[b] = scale;
            self.offsets[b] = 8.0 * sum as f32;
        }
    }
}

pub struct Encoder {
    hidden: usize,
    heads: usize,
    ff: usize,
    positions: usize,
    eps: f32,
    bos: u32,
    eos: u32,
    /// The word embeddings stay 4-bit (most of the file): one row is expanded per token.
    words: Vec<u8>,
    vocab: usize,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    avx2: bool,
}

impl Encoder {
    pub(crate) fn from_file(file: &File) -> Result<Encoder> {
        let s = &file.shape;
        let (h, ff) = (s.hidden, s.ff);
        if file.vocab.scores.len() > s.vocab {
            return Err(Error::Format(
                "the tokenizer has more pieces than the model has words".into(),
            ));
        }
        let layers = (0..s.layers)
            .map(|l| {
                let n = |part: &str| format!("l{l}.{part}");
                Ok(Layer {
                    q: Linear::load(file, &n("q"), h, h)?,
                    k: Linear::load(file, &n("k"), h, h)?,
                    v: Linear::load(file, &n("v"), h, h)?,
                    out: Linear::load(file, &n("ao"), h, h)?,
                    attention_norm: LayerNorm::load(file, &n("aln"), h)?,
                    up: Linear::load(file, &n("fi"), ff, h)?,
                    down: Linear::load(file, &n("fo"), h, ff)?,
                    output_norm: LayerNorm::load(file, &n("oln"), h)?,
                })
            })
            .collect::<Result<Vec<Layer>>>()?;
        Ok(Encoder {
            hidden: h,
            heads: s.heads,
            ff,
            positions: s.positions,
            eps: s.eps,
            bos: file.vocab.bos,
            eos: file.vocab.eos,
            words: file.q4("emb.word", s.vocab * h)?.to_vec(),
            vocab: s.vocab,
            position: file.f32("emb.pos", s.positions * h)?,
            token_type: file.f32("emb.type", s.token_types * h)?,
            embedding_norm: LayerNorm::load(file, "emb.ln", h)?,
            layers,
            avx2: has_avx2(),
        })
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// The embedding of one tokenised text (without `<s>` and `</s>`).
    pub fn embed_ids(&self, ids: &[u32]) -> Vec<f32> {
        let mut out = self.embed_many(std::slice::from_ref(&ids.to_vec()), 1);
        out.pop().unwrap_or_default()
    }

    /// The embeddings of many tokenised texts, on up to `threads` threads.
    pub fn embed_many(&self, texts: &[Vec<u32>], threads: usize) -> Vec<Vec<f32>> {
        // Every window of every text: (text, its token ids with <s> and </s>).
        let width = self.positions - 2;
        let mut windows: Vec<(usize, Vec<u32>)> = Vec::new();
        for (t, ids) in texts.iter().enumerate() {
            let mut chunks: Vec<&[u32]> = ids.chunks(width).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            for chunk in chunks {
                let mut w = Vec::with_capacity(chunk.len() + 2);
                w.push(self.bos);
                w.extend_from_slice(chunk);
                w.push(self.eos);
                windows.push((t, w));
            }
        }
        // Groups of consecutive windows of about GROUP_TOKENS tokens.
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        let mut tokens = 0;
        for (i, (_, w)) in windows.iter().enumerate() {
            if i > start && tokens + w.len() > GROUP_TOKENS {
                groups.push(start..i);
                start = i;
                tokens = 0;
            }
            tokens += w.len();
        }
        if start < windows.len() {
            groups.push(start..windows.len());
        }

        let next = AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let g = next.fetch_add(1, Ordering::Relaxed);
                let Some(range) = groups.get(g) else {
                    return done;
                };
                let segments: Vec<&[u32]> =
                    windows[range.clone()].iter().map(|(_, w)| &w[..]).collect();
                done.push((range.start, self.forward(&segments)));
            }
        };
        let threads = threads.min(groups.len()).max(1);
        let mut results: Vec<(usize, Vec<Vec<f32>>)> = if threads == 1 {
            work()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        results.sort_by_key(|(start, _)| *start);

        let mut sums = vec![vec![0f32; self.hidden]; texts.len()];
        for (start, means) in results {
            for (i, mean) in means.into_iter().enumerate() {
                let (text, w) = &windows[start + i];
                let weight = (w.len() - 2).max(1) as f32;
                for (s, m) in sums[*text].iter_mut().zip(&mean) {
                    *s += weight * m;
                }
            }
        }
        for v in &mut sums {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        sums
    }

    /// The mean of the last layer's token vectors, for each segment (a window with its
    /// `<s>` and `</s>`); segments attend only to themselves.
    fn forward(&self, segments: &[&[u32]]) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let total: usize = segments.iter().map(|s| s.len()).sum();
        let mut x = vec![0f32; total * h];
        let mut row = 0;
        for segment in segments {
            for (p, &id) in segment.iter().enumerate() {
                let out = &mut x[row * h..(row + 1) * h];
                self.word(id, out);
                let pos = &self.position[p * h..(p + 1) * h];
                for ((o, p), t) in out.iter_mut().zip(pos).zip(&self.token_type[..h]) {
                    *o += p + t;
                }
                row += 1;
            }
        }
        layer_norm(&mut x, None, &self.embedding_norm, h, self.eps);

        let mut spans = Vec::with_capacity(segments.len());
        let mut at = 0;
        for s in segments {
            spans.push(at..at + s.len());
            at += s.len();
        }
        let mut quantized = Quantized::default();
        let mut q = vec![0f32; total * h];
        let mut k = vec![0f32; total * h];
        let mut v = vec![0f32; total * h];
        let mut context = vec![0f32; total * h];
        let mut projected = vec![0f32; total * h];
        let mut up = vec![0f32; total * self.ff];
        for layer in &self.layers {
            quantized.quantize(&x);
            self.matmul(&layer.q, &quantized, &mut q);
            self.matmul(&layer.k, &quantized, &mut k);
            self.matmul(&layer.v, &quantized, &mut v);
            self.attention(&spans, &q, &k, &v, &mut context);
            quantized.quantize(&context);
            self.matmul(&layer.out, &quantized, &mut projected);
            layer_norm(&mut x, Some(&projected), &layer.attention_norm, h, self.eps);

            quantized.quantize(&x);
            self.matmul(&layer.up, &quantized, &mut up);
            up.iter_mut().for_each(|u| *u = gelu(*u));
            quantized.quantize(&up);
            self.matmul(&layer.down, &quantized, &mut projected);
            layer_norm(&mut x, Some(&projected), &layer.output_norm, h, self.eps);
        }

        spans
            .iter()
            .map(|span| {
                let mut mean = vec![0f32; h];
                for t in span.clone() {
                    for (m, v) in mean.iter_mut().zip(&x[t * h..(t + 1) * h]) {
                        *m += v;
                    }
                }
                let n = span.len().max(1) as f32;
                mean.iter_mut().for_each(|m| *m /= n);
                mean
            })
            .collect()
    }

    /// Token `id`'s word embedding, expanded from 4 bits.
    fn word(&self, id: u32, out: &mut [f32]) {
        let id = (id as usize).min(self.vocab - 1);
        let row_bytes = self.hidden / BLOCK * BLOCK_BYTES;
        let row = &self.words[id * row_bytes..(id + 1) * row_bytes];
        for (block, out) in row
            .chunks_exact(BLOCK_BYTES)
            .zip(out.chunks_exact_mut(BLOCK))
        {
            let scale = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            for (j, b) in block[2..].iter().enumerate() {
                out[j] = (i32::from(b & 0x0f) - 8) as f32 * scale;
                out[j + 16] = (i32::from(b >> 4) - 8) as f32 * scale;
            }
        }
    }

    /// Scaled dot-product attention, each head on its own slice, each token over its own
    /// segment.
    fn attention(
        &self,
        spans: &[std::ops::Range<usize>],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &mut [f32],
    ) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut weights = Vec::new();
        for span in spans {
            for t in span.clone() {
                for head in 0..self.heads {
                    let at = head * d;
                    let qh = &q[t * h + at..t * h + at + d];
                    weights.clear();
                    let mut max = f32::NEG_INFINITY;
                    for s in span.clone() {
                        let kh = &k[s * h + at..s * h + at + d];
                        let dot: f32 = qh.iter().zip(kh).map(|(a, b)| a * b).sum::<f32>() * scale;
                        max = max.max(dot);
                        weights.push(dot);
                    }
                    let mut sum = 0.0;
                    for w in &mut weights {
                        *w = (*w - max).exp();
                        sum += *w;
                    }
                    let o = &mut out[t * h + at..t * h + at + d];
                    o.iter_mut().for_each(|x| *x = 0.0);
                    for (s, w) in span.clone().zip(&weights) {
                        let p = w / sum;
                        for (x, vv) in o.iter_mut().zip(&v[s * h + at..s * h + at + d]) {
                            *x += p * vv;
                        }
                    }
                }
            }
        }
    }

    /// `y = x · Wᵀ + b` for every token, over quantised `x`.
    fn matmul(&self, w: &Linear, x: &Quantized, y: &mut [f32]) {
        debug_assert_eq!(x.values.len() / w.cols * w.rows, y.len());
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked at load).
            unsafe { avx2::matmul(w, x, y) };
            return;
        }
        matmul_portable(w, x, y);
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn matmul_portable(w: &Linear, x: &Quantized, y: &mut [f32]) {
    let blocks = w.cols / BLOCK;
    let tokens = x.values.len() / w.cols;
    for o in 0..w.rows {
        let wr = &w.weights[o * w.cols..(o + 1) * w.cols];
        let ws = &w.scales[o * blocks..(o + 1) * blocks];
        for t in 0..tokens {
            let xr = &x.values[t * w.cols..(t + 1) * w.cols];
            let xs = &x.scales[t * blocks..(t + 1) * blocks];
            let mut acc = 0f32;
            for b in 0..blocks {
                let dot: i32 = wr[b * BLOCK..(b + 1) * BLOCK]
                    .iter()
                    .zip(&xr[b * BLOCK..(b + 1) * BLOCK])
                    .map(|(w, x)| i32::from(*w) * i32::from(*x))
                    .sum();
                let dot = dot as f32 - x.offsets[t * blocks + b];
                acc += ws[b] * xs[b] * dot;
            }
            y[t * w.rows + o] = w.bias[o] + acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Linear, Quantized, BLOCK};
    use std::arch::x86_64::*;

    /// For each token and output row: the integer dot products of eight blocks at a time are
    /// reduced into one vector of eight sums, so the scales and the offset correction apply
    /// to eight blocks in three instructions; a remainder of four blocks (384 columns are
    /// twelve) goes the same way in half a vector.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn matmul(w: &Linear, x: &Quantized, y: &mut [f32]) {
        let blocks = w.cols / BLOCK;
        let tokens = x.values.len() / w.cols;
        assert!(
            w.cols.is_multiple_of(BLOCK)
                && w.weights.len() >= w.rows * w.cols
                && w.scales.len() >= w.rows * blocks
                && w.bias.len() >= w.rows
                && x.scales.len() >= tokens * blocks
                && x.offsets.len() >= tokens * blocks
                && y.len() >= tokens * w.rows
        );
        let ones = _mm256_set1_epi16(1);
        for o in 0..w.rows {
            // SAFETY (every pointer below): offsets stay within the lengths asserted above.
            let wr = w.weights.as_ptr().add(o * w.cols);
            let ws = w.scales.as_ptr().add(o * blocks);
            for t in 0..tokens {
                let xr = x.values.as_ptr().add(t * w.cols);
                let xs = x.scales.as_ptr().add(t * blocks);
                let xo = x.offsets.as_ptr().add(t * blocks);
                let dot = |b: usize| {
                    let wv = _mm256_loadu_si256(wr.add(b * BLOCK).cast());
                    let xv = _mm256_loadu_si256(xr.add(b * BLOCK).cast());
                    // Unsigned stored weights × signed activations, summed to i32 by pairs.
                    _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv), ones)
                };
                let mut acc = _mm256_setzero_ps();
                let mut b = 0;
                while b + 8 <= blocks {
                    let h01 = _mm256_hadd_epi32(dot(b), dot(b + 1));
                    let h23 = _mm256_hadd_epi32(dot(b + 2), dot(b + 3));
                    let h45 = _mm256_hadd_epi32(dot(b + 4), dot(b + 5));
                    let h67 = _mm256_hadd_epi32(dot(b + 6), dot(b + 7));
                    let h0123 = _mm256_hadd_epi32(h01, h23);
                    let h4567 = _mm256_hadd_epi32(h45, h67);
                    let sums = _mm256_add_epi32(
                        _mm256_permute2x128_si256(h0123, h4567, 0x20),
                        _mm256_permute2x128_si256(h0123, h4567, 0x31),
                    );
                    // Stored weights are weight + 8: take away 8 × the activations' sum.
                    let dots = _mm256_sub_ps(_mm256_cvtepi32_ps(sums), _mm256_loadu_ps(xo.add(b)));
                    let scale =
                        _mm256_mul_ps(_mm256_loadu_ps(ws.add(b)), _mm256_loadu_ps(xs.add(b)));
                    acc = _mm256_fmadd_ps(dots, scale, acc);
                    b += 8;
                }
                let mut total = sum8(acc);
                if b + 4 <= blocks {
                    let h01 = _mm256_hadd_epi32(dot(b), dot(b + 1));
                    let h23 = _mm256_hadd_epi32(dot(b + 2), dot(b + 3));
                    let h = _mm256_hadd_epi32(h01, h23);
                    let sums =
                        _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
                    let dots = _mm_sub_ps(_mm_cvtepi32_ps(sums), _mm_loadu_ps(xo.add(b)));
                    let scale = _mm_mul_ps(_mm_loadu_ps(ws.add(b)), _mm_loadu_ps(xs.add(b)));
                    total += sum4(_mm_mul_ps(dots, scale));
                    b += 4;
                }
                while b < blocks {
                    let d = dot(b);
                    let s =
                        _mm_add_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
                    let s = sum4(_mm_cvtepi32_ps(s));
                    total += (s - *xo.add(b)) * *ws.add(b) * *xs.add(b);
                    b += 1;
                }
                *y.get_unchecked_mut(t * w.rows + o) = w.bias[o] + total;
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn sum8(v: __m256) -> f32 {
        sum4(_mm_add_ps(
            _mm256_castps256_ps128(v),
            _mm256_extractf128_ps(v, 1),
        ))
    }

    #[target_feature(enable = "avx2,fma")]
    fn sum4(s: __m128) -> f32 {
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

/// `x = LayerNorm(x + y)` row by row (`LayerNorm(x)` without `y`).
fn layer_norm(x: &mut [f32], y: Option<&[f32]>, norm: &LayerNorm, h: usize, eps: f32) {
    for (t, row) in x.chunks_exact_mut(h).enumerate() {
        if let Some(y) = y {
            for (r, v) in row.iter_mut().zip(&y[t * h..(t + 1) * h]) {
                *r += v;
            }
        }
        let mean = row.iter().sum::<f32>() / h as f32;
        let var = row.iter().map(|r| (r - mean) * (r - mean)).sum::<f32>() / h as f32;
        let inverse = 1.0 / (var + eps).sqrt();
        for ((r, w), b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
            *r = (*r - mean) * inverse * w + b;
        }
    }
}

/// Rounds half to even, for |x| well under 2^22 (here at most 127.5): adding and taking
/// away 1.5 × 2^23 leaves no bits below the point, and the addition rounds to even. Unlike
/// `round_ties_even`, this stays inline and vectorises.
#[inline]
fn round_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// GELU with the exact error function (BERT's, not the tanh approximation).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function as a rational function of x (Eigen's and XLA's single-precision
/// coefficients), within 1e-7 of the exact value; no branch but the clamp, so it
/// vectorises.
fn erf(x: f32) -> f32 {
    const A: [f32; 7] = [
        -1.609_603_3e-2,
        -2.954_6e-3,
        -7.349_906_3e-4,
        -5.692_506_4e-5,
        -2.101_024e-6,
        2.770_681_4e-8,
        -2.726_142_3e-10,
    ];
    const B: [f32; 5] = [
        -1.426_474e-2,
        -7.373_329e-3,
        -1.682_827e-3,
        -2.133_740_6e-4,
        -1.456_607_2e-5,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = A[6];
    for a in A[..6].iter().rev() {
        p = p * x2 + a;
    }
    let mut q = B[4];
    for b in B[..4].iter().rev() {
        q = q * x2 + b;
    }
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simd_kernel_and_the_portable_one_agree() {
        // A little generator, so the test needs no crate: weights, scales and activations
        // of every sign, in shapes with a partial group of blocks (12 and 48 blocks).
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (rows, cols, tokens) in [(6, 384, 3), (5, 1536, 2)] {
            let w = Linear {
                rows,
                cols,
                weights: (0..rows * cols).map(|_| (next() % 16) as u8).collect(),
                scales: (0..rows * cols / BLOCK)
                    .map(|_| (next() % 1000) as f32 / 1e4)
                    .collect(),
                bias: (0..rows).map(|i| i as f32).collect(),
            };
            let x: Vec<f32> = (0..tokens * cols)
                .map(|_| (next() % 2001) as f32 / 100.0 - 10.0)
                .collect();
            let mut q = Quantized::default();
            q.quantize(&x);
            let mut portable = vec![0f32; tokens * rows];
            matmul_portable(&w, &q, &mut portable);
            if has_avx2() {
                let mut simd = vec![0f32; tokens * rows];
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    avx2::matmul(&w, &q, &mut simd)
                };
                for (a, b) in simd.iter().zip(&portable) {
                    assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} {b}");
                }
            }
            // And both are the float product of the dequantised values.
            for t in 0..tokens {
                for o in 0..rows {
                    let exact: f32 = (0..cols)
                        .map(|i| {
                            let b = i / BLOCK;
                            let wv = (f32::from(w.weights[o * cols + i]) - 8.0)
                                * w.scales[o * cols / BLOCK + b];
                            let xv =
                                f32::from(q.values[t * cols + i]) * q.scales[t * cols / BLOCK + b];
                            wv * xv
                        })
                        .sum::<f32>()
                        + w.bias[o];
                    let got = portable[t * rows + o];
                    assert!((got - exact).abs() <= 1e-3 * exact.abs().max(1.0));
                }
            }
        }
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
            (3.5, 0.999_999_3),
            (10.0, 1.0),
        ] {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn quantised_activations_round_to_even_and_keep_block_sums() {
        let mut x = vec![0f32; 64];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = 1.5;
        x[3] = -127.0;
        let mut q = Quantized::default();
        q.quantize(&x);
        assert_eq!(&q.values[..4], &[127, 0, 2, -127]);
        assert_eq!(q.offsets, vec![16.0, 0.0]);
        assert_eq!(q.scales, vec![1.0, 0.0]);
    }
}
