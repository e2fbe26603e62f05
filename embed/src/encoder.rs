//! The encoder: XLM-R's embeddings and 12 BERT layers (self-attention, a GELU feed-forward
//! block, post-layer-norm), then the mean of the last layer's token vectors, L2-normalised.
//!
//! The weight matrices stay 4-bit, expanded once at load to one byte per weight (their
//! stored value, weight + 8) beside one scale per block of 32. Before each matrix product
//! the activations are quantised the same way, to 8 bits per value with one scale per block
//! of 32, so the products are integer dot products ([`kernel`](crate::kernel)). This is the
//! numerical recipe the weights were published with, so the vectors match the reference
//! package's.
//!
//! All the tokens of a text (and, in a batch, of several texts) go through each matrix
//! together, so each weight is read once per group of tokens, not once per token.
//!
//! Texts longer than the model's 512 positions are cut into windows; a text's vector is the
//! mean over its windows, weighted by their lengths.

use crate::format::{f16_to_f32, File, BLOCK, BLOCK_BYTES};
use crate::kernel::{Kernel, Linear, Quantized, PANEL};
use crate::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// About this many tokens go through the layers together in a batch: enough that each
/// weight matrix is read once for many texts, few enough that activations stay in cache.
const GROUP_TOKENS: usize = 256;

/// Reads the 4-bit matrix `name` (rows × cols, applied as `x · Wᵀ + b`): one byte per
/// stored weight and one scale per block, laid out for the kernels.
fn load_linear(file: &File, name: &str, rows: usize, cols: usize) -> Result<Linear> {
    if !rows.is_multiple_of(PANEL) {
        return Err(Error::Format(format!(
            "{name} has {rows} rows, not a multiple of {PANEL}"
        )));
    }
    let data = file.q4(&format!("{name}.w"), rows * cols)?;
    let mut stored = vec![0u8; rows * cols];
    let mut scales = Vec::with_capacity(rows * cols / BLOCK);
    for (block, out) in data
        .chunks_exact(BLOCK_BYTES)
        .zip(stored.chunks_exact_mut(BLOCK))
    {
        scales.push(f16_to_f32(u16::from_le_bytes([block[0], block[1]])));
        for (j, b) in block[2..].iter().enumerate() {
            out[j] = b & 0x0f;
            out[j + 16] = b >> 4;
        }
    }
    let bias = file.f32(&format!("{name}.b"), rows)?;
    Ok(Linear::new(rows, cols, &stored, &scales, bias))
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
    kernel: Kernel,
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
                    q: load_linear(file, &n("q"), h, h)?,
                    k: load_linear(file, &n("k"), h, h)?,
                    v: load_linear(file, &n("v"), h, h)?,
                    out: load_linear(file, &n("ao"), h, h)?,
                    attention_norm: LayerNorm::load(file, &n("aln"), h)?,
                    up: load_linear(file, &n("fi"), ff, h)?,
                    down: load_linear(file, &n("fo"), h, ff)?,
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
            kernel: Kernel::best(),
        })
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// The kernel the matrix products run on: the fastest this CPU has, unless set.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Runs the matrix products on `kernel` (to compare kernels, or to test each one);
    /// false, and no change, when this CPU cannot run it.
    pub fn set_kernel(&mut self, kernel: Kernel) -> bool {
        if kernel.is_available() {
            self.kernel = kernel;
        }
        self.kernel == kernel
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
        #[cfg(target_arch = "x86_64")]
        if self.kernel != Kernel::Portable {
            // SAFETY: on x86-64, every kernel but the portable one needs AVX2 and FMA, and
            // the encoder only ever holds a kernel this CPU can run (`Kernel::best`,
            // `set_kernel`).
            return unsafe { self.forward_avx2(segments) };
        }
        self.forward_any(segments)
    }

    /// [`Self::forward_any`] compiled for AVX2 and FMA: the element-wise work around the
    /// matrix products (quantising, layer norms, GELU, attention), all inlined into it,
    /// vectorises 8 floats wide instead of x86-64's baseline 4.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_avx2(&self, segments: &[&[u32]]) -> Vec<Vec<f32>> {
        self.forward_any(segments)
    }

    #[inline(always)]
    fn forward_any(&self, segments: &[&[u32]]) -> Vec<Vec<f32>> {
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
        let mut weights = Vec::new();
        for layer in &self.layers {
            let kernel = self.kernel;
            quantized.quantize(&x, h);
            layer.q.apply(kernel, &quantized, &mut q);
            layer.k.apply(kernel, &quantized, &mut k);
            layer.v.apply(kernel, &quantized, &mut v);
            self.attention(&spans, &q, &k, &v, &mut context, &mut weights);
            quantized.quantize(&context, h);
            layer.out.apply(kernel, &quantized, &mut projected);
            layer_norm(&mut x, Some(&projected), &layer.attention_norm, h, self.eps);

            quantized.quantize(&x, h);
            layer.up.apply(kernel, &quantized, &mut up);
            up.iter_mut().for_each(|u| *u = gelu(*u));
            quantized.quantize(&up, self.ff);
            layer.down.apply(kernel, &quantized, &mut projected);
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
    #[inline(always)]
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
    /// segment. `weights` is scratch space.
    #[inline(always)]
    fn attention(
        &self,
        spans: &[std::ops::Range<usize>],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &mut [f32],
        weights: &mut Vec<f32>,
    ) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        for span in spans {
            for t in span.clone() {
                for head in 0..self.heads {
                    let at = head * d;
                    let qh = &q[t * h + at..t * h + at + d];
                    weights.clear();
                    let mut max = f32::NEG_INFINITY;
                    for s in span.clone() {
                        let score = dot(qh, &k[s * h + at..s * h + at + d]) * scale;
                        max = max.max(score);
                        weights.push(score);
                    }
                    let mut sum = 0.0;
                    for w in weights.iter_mut() {
                        *w = (*w - max).exp();
                        sum += *w;
                    }
                    let o = &mut out[t * h + at..t * h + at + d];
                    o.fill(0.0);
                    for (s, w) in span.clone().zip(weights.iter()) {
                        let p = w / sum;
                        for (x, vv) in o.iter_mut().zip(&v[s * h + at..s * h + at + d]) {
                            *x += p * vv;
                        }
                    }
                }
            }
        }
    }
}

/// The dot product of two vectors of the same length, in eight lanes summed apart, which
/// the compiler turns into vector instructions.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `x = LayerNorm(x + y)` row by row (`LayerNorm(x)` without `y`).
#[inline(always)]
fn layer_norm(x: &mut [f32], y: Option<&[f32]>, norm: &LayerNorm, h: usize, eps: f32) {
    for (t, row) in x.chunks_exact_mut(h).enumerate() {
        if let Some(y) = y {
            for (r, v) in row.iter_mut().zip(&y[t * h..(t + 1) * h]) {
                *r += v;
            }
        }
        let mean = sum_of(row) / h as f32;
        let mut lanes = [0f32; 8];
        for chunk in row.chunks_exact(8) {
            for (l, r) in lanes.iter_mut().zip(chunk) {
                *l += (r - mean) * (r - mean);
            }
        }
        let rest: f32 = row
            .chunks_exact(8)
            .remainder()
            .iter()
            .map(|r| (r - mean) * (r - mean))
            .sum();
        let var = (lanes.iter().sum::<f32>() + rest) / h as f32;
        let inverse = 1.0 / (var + eps).sqrt();
        for ((r, w), b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
            *r = (*r - mean) * inverse * w + b;
        }
    }
}

/// A sum in eight lanes, so that the compiler vectorises it (a float sum taken in order
/// cannot be reordered).
#[inline(always)]
fn sum_of(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// GELU with the exact error function (BERT's, not the tanh approximation).
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function as a rational function of x (Eigen's and XLA's single-precision
/// coefficients), within 1e-7 of the exact value; no branch but the clamp, so it
/// vectorises.
#[inline(always)]
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
}
