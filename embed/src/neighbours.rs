//! The questions nearest a query, and a vote among them for their articles; and a check, on
//! a knowledge base's own questions, of whether that vote tells its articles apart better
//! than their mean questions do.
//!
//! With many questions per article, phrased the way customers phrase them (BANKING77's 100
//! a topic), the nearest few questions say which article a query is about more often than
//! the articles' means, which blur a topic's several ways of asking into one direction. With
//! a handful per article (MASSIVE's 8), the nearest question is a chance likeness of form
//! more often than not. Which of the two holds is a property of the knowledge base, so it is
//! measured on it ([`LeaveOneOut::measure`]), not assumed. Here, like the classifier, because
//! it is arithmetic in tight loops, built optimised even in a debug build.

use crate::classifier::examples_dim;
use crate::dot;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// How many of the nearest questions vote.
pub const VOTERS: usize = 3;

/// The [`VOTERS`] highest cosines offered, each with its article (its class).
#[derive(Debug, Clone, Copy)]
pub struct Nearest {
    best: [(f32, usize); VOTERS],
}

impl Default for Nearest {
    fn default() -> Nearest {
        Nearest {
            best: [(f32::NEG_INFINITY, usize::MAX); VOTERS],
        }
    }
}

impl Nearest {
    /// Keeps `(cosine, class)` if it is among the highest so far. One pass, no sorting.
    #[inline(always)]
    pub fn offer(&mut self, cosine: f32, class: usize) {
        if cosine.is_nan() || cosine <= self.best[VOTERS - 1].0 {
            return;
        }
        let at = self
            .best
            .iter()
            .position(|(b, _)| cosine > *b)
            .unwrap_or(VOTERS - 1);
        self.best.copy_within(at..VOTERS - 1, at + 1);
        self.best[at] = (cosine, class);
    }

    /// Each voting class with its share of the vote, the shares summing to 1: every
    /// question weighs `exp((cosine - highest) / temperature)` for its class. Empty when
    /// nothing was offered.
    pub fn votes(&self, temperature: f32) -> Vec<(usize, f32)> {
        let top = self.best[0].0;
        let mut votes: Vec<(usize, f32)> = Vec::with_capacity(VOTERS);
        for &(cosine, class) in self.best.iter().filter(|(c, _)| c.is_finite()) {
            let w = ((cosine - top) / temperature).exp();
            match votes.iter_mut().find(|(c, _)| *c == class) {
                Some((_, v)) => *v += w,
                None => votes.push((class, w)),
            }
        }
        let total: f32 = votes.iter().map(|(_, w)| w).sum();
        votes.iter_mut().for_each(|(_, w)| *w /= total);
        votes
    }

    /// The class with the largest share of the vote; `None` when nothing was offered.
    fn winner(&self, temperature: f32) -> Option<usize> {
        self.votes(temperature)
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(class, _)| class)
    }
}

/// Questions checked at most, and fewer when the knowledge base is large: each is compared
/// with every other, and the work budget bounds that (checked × questions × dimensions
/// multiply-adds, about a tenth of a second on one core). Up to about 1,600 questions,
/// every one is checked.
const CHECKED: usize = 2_000;
const MAX_WORK: u64 = 1_000_000_000;
/// Under this many checked questions the accuracies say too little; none is measured.
const MIN_CHECKED: usize = 50;
/// Checked questions compared with every other at once: each other question is read from
/// memory once for the lot of them.
const BLOCK: usize = 8;

/// How often a knowledge base's questions, each left out in turn, are put in their own
/// article by the mean of the article's other questions, and by a vote of their nearest
/// other questions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaveOneOut {
    pub by_mean: f64,
    pub by_neighbours: f64,
    /// How many questions were checked: evenly spaced over the examples.
    pub checked: usize,
}

impl LeaveOneOut {
    /// Measured on `(unit vector, class)` examples, classes numbered `0..classes`, each
    /// distinct question once: a copy of a question in the same article (a title repeated
    /// as a question, a question entered twice) would otherwise answer for it. `None` when
    /// there are fewer than two classes, too few examples or too many to check within the
    /// work budget, or
    /// when the examples are not all of one length with their classes in range.
    pub fn measure(
        examples: &[(&[f32], usize)],
        classes: usize,
        temperature: f32,
    ) -> Option<LeaveOneOut> {
        LeaveOneOut::measure_within(examples, classes, temperature, MAX_WORK)
    }

    fn measure_within(
        examples: &[(&[f32], usize)],
        classes: usize,
        temperature: f32,
        max_work: u64,
    ) -> Option<LeaveOneOut> {
        let dim = examples_dim(examples, classes)?;
        let examples = distinct(examples);
        let n = examples.len();
        let affordable = (max_work / (n * dim) as u64) as usize;
        let checked = CHECKED.min(affordable).min(n);
        if checked < MIN_CHECKED {
            return None;
        }
        // Each article's sum of vectors and its squared length: the mean without one of
        // them is the sum less that one, its length known without another pass.
        let mut sums = vec![0f32; classes * dim];
        let mut members = vec![0usize; classes];
        for (v, c) in &examples {
            members[*c] += 1;
            for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(v.iter()) {
                *s += x;
            }
        }
        let lengths: Vec<f32> = sums.chunks_exact(dim).map(|s| dot(s, s)).collect();
        let picked: Vec<usize> = (0..checked).map(|j| j * n / checked).collect();
        let (mut by_mean, mut by_neighbours) = (0usize, 0usize);
        for block in picked.chunks(BLOCK) {
            let mut nearest = [Nearest::default(); BLOCK];
            for (k, (u, class)) in examples.iter().enumerate() {
                for (near, &i) in nearest.iter_mut().zip(block) {
                    if k != i {
                        near.offer(dot(examples[i].0, u), *class);
                    }
                }
            }
            for (near, &i) in nearest.iter().zip(block) {
                let (v, class) = examples[i];
                by_neighbours += usize::from(near.winner(temperature) == Some(class));
                let mean = sums
                    .chunks_exact(dim)
                    .zip(&lengths)
                    .enumerate()
                    .filter(|(c, _)| *c != class || members[class] > 1)
                    .filter_map(|(c, (s, len))| {
                        let (d, len) = if c == class {
                            // (s - v)·v and |s - v|² = |s|² - 2 s·v + |v|².
                            let (d, vv) = (dot(v, s), dot(v, v));
                            (d - vv, len - 2.0 * d + vv)
                        } else {
                            (dot(v, s), *len)
                        };
                        (len > 1e-6).then(|| (c, d / len.sqrt()))
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(c, _)| c);
                by_mean += usize::from(mean == Some(class));
            }
        }
        Some(LeaveOneOut {
            by_mean: by_mean as f64 / checked as f64,
            by_neighbours: by_neighbours as f64 / checked as f64,
            checked,
        })
    }
}

/// The examples with each vector kept once per class (the first of equal ones).
fn distinct<'a>(examples: &[(&'a [f32], usize)]) -> Vec<(&'a [f32], usize)> {
    let mut seen: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
    let mut kept: Vec<(&[f32], usize)> = Vec::with_capacity(examples.len());
    for &(v, class) in examples {
        let mut hasher = DefaultHasher::new();
        v.iter().for_each(|x| x.to_bits().hash(&mut hasher));
        let same = seen.entry((class, hasher.finish())).or_default();
        if same.iter().any(|&k| kept[k].0 == v) {
            continue;
        }
        same.push(kept.len());
        kept.push((v, class));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    }

    #[test]
    fn the_nearest_keep_the_highest_cosines_and_vote_by_them() {
        let mut near = Nearest::default();
        assert!(near.votes(0.01).is_empty());
        assert_eq!(near.winner(0.01), None);
        for (cosine, class) in [(0.5, 0), (0.9, 1), (0.7, 2), (0.89, 2), (0.1, 1), (0.88, 2)] {
            near.offer(cosine, class);
        }
        // Kept: 0.9 (1), 0.89 (2), 0.88 (2). Class 2 has two voices a little further away.
        let votes = near.votes(0.01);
        let share = |class| votes.iter().find(|(c, _)| *c == class).map(|(_, w)| *w);
        let (one, two) = (share(1).unwrap(), share(2).unwrap());
        assert!(share(0).is_none());
        assert!((one + two - 1.0).abs() < 1e-6);
        let w1 = 1.0;
        let w2 = (-1.0f32).exp() + (-2.0f32).exp();
        assert!((one - w1 / (w1 + w2)).abs() < 1e-4, "{votes:?}");
        assert_eq!(near.winner(0.01), Some(1));
        // At a higher temperature the distance matters less, and the two voices win.
        assert_eq!(near.winner(1.0), Some(2));
    }

    /// Two articles of points on a circle: with `phase` 0 each article is one arc (the
    /// means tell them apart), with `phase` 1 each is two arcs facing each other (the means
    /// nearly cancel; only the neighbours tell).
    fn circle(phase: usize) -> Vec<(Vec<f32>, usize)> {
        (0..120)
            .map(|i| {
                let angle = i as f32 / 120.0 * std::f32::consts::TAU;
                let class = if phase == 0 { i / 60 } else { (i / 30) % 2 };
                (unit(&[angle.cos(), angle.sin(), 0.05]), class)
            })
            .collect()
    }

    #[test]
    fn leaving_one_out_tells_whether_the_neighbours_or_the_means_know_the_article_better() {
        for phase in [0, 1] {
            let points = circle(phase);
            let examples: Vec<(&[f32], usize)> = points.iter().map(|(v, c)| (&v[..], *c)).collect();
            let loo = LeaveOneOut::measure(&examples, 2, 0.01).expect("measured");
            assert_eq!(loo.checked, 120);
            assert!(loo.by_neighbours > 0.9, "{phase}: {loo:?}");
            if phase == 0 {
                assert!(loo.by_mean > 0.9, "{loo:?}");
            } else {
                assert!(loo.by_mean < 0.7, "{loo:?}");
            }
        }
    }

    /// Unit vectors near one of `classes` random centres, by a seeded xorshift; class 0
    /// has a single member.
    fn cloud(n: usize, classes: usize, dim: usize, seed: u64) -> Vec<(Vec<f32>, usize)> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 20_000) as f32 / 10_000.0 - 1.0
        };
        let centres: Vec<Vec<f32>> = (0..classes)
            .map(|_| (0..dim).map(|_| next()).collect())
            .collect();
        (0..n)
            .map(|i| {
                let class = if i == 0 { 0 } else { 1 + i % (classes - 1) };
                let v: Vec<f32> = centres[class].iter().map(|c| c + 0.9 * next()).collect();
                (unit(&v), class)
            })
            .collect()
    }

    /// The same check done the slow way: every mean rebuilt without the question, every
    /// other question sorted by its cosine.
    fn brute_force(points: &[(Vec<f32>, usize)], classes: usize) -> (usize, usize) {
        let (mut by_mean, mut by_neighbours) = (0, 0);
        let cos = |a: &[f32], b: &[f32]| -> f64 {
            let d: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            d / (n(a) * n(b))
        };
        for (i, (v, class)) in points.iter().enumerate() {
            let mut best = (f64::NEG_INFINITY, usize::MAX);
            for c in 0..classes {
                let mut mean = vec![0f32; v.len()];
                let others = points
                    .iter()
                    .enumerate()
                    .filter(|(j, (_, k))| *j != i && *k == c);
                for (_, (u, _)) in others {
                    mean.iter_mut().zip(u).for_each(|(m, x)| *m += x);
                }
                if mean.iter().all(|m| *m == 0.0) {
                    continue;
                }
                let s = cos(v, &mean);
                if s > best.0 {
                    best = (s, c);
                }
            }
            by_mean += usize::from(best.1 == *class);
            let mut others: Vec<(f64, usize)> = points
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (u, c))| (cos(v, u), *c))
                .collect();
            others.sort_by(|a, b| b.0.total_cmp(&a.0));
            let top = others[0].0;
            let mut votes = vec![0f64; classes];
            for (s, c) in &others[..VOTERS] {
                votes[*c] += ((s - top) / 0.01).exp();
            }
            let winner = (0..classes).max_by(|a, b| votes[*a].total_cmp(&votes[*b]));
            by_neighbours += usize::from(winner == Some(*class));
        }
        (by_mean, by_neighbours)
    }

    #[test]
    fn leaving_one_out_agrees_with_the_slow_way_and_counts_a_copy_once() {
        for seed in [7, 11, 13] {
            let points = cloud(90, 6, 8, seed);
            let examples: Vec<(&[f32], usize)> = points.iter().map(|(v, c)| (&v[..], *c)).collect();
            let loo = LeaveOneOut::measure(&examples, 6, 0.01).expect("measured");
            assert_eq!(loo.checked, 90);
            let (by_mean, by_neighbours) = brute_force(&points, 6);
            assert_eq!(
                (loo.by_mean, loo.by_neighbours),
                (by_mean as f64 / 90.0, by_neighbours as f64 / 90.0),
                "seed {seed}"
            );
            // Neither is perfect here, so a question that answered for itself would show.
            assert!(loo.by_neighbours < 0.95 && loo.by_mean < 0.95, "{loo:?}");
            // Every question entered twice in its article: the same check, not a better one.
            let twice: Vec<(&[f32], usize)> = examples.iter().flat_map(|e| [*e, *e]).collect();
            assert_eq!(LeaveOneOut::measure(&twice, 6, 0.01), Some(loo));
        }
    }

    #[test]
    fn leaving_one_out_keeps_to_its_budget_and_needs_two_articles() {
        let points = circle(0);
        let examples: Vec<(&[f32], usize)> = points.iter().map(|(v, c)| (&v[..], *c)).collect();
        // Room for 60 of the 120 questions: every other one is checked.
        let loo = LeaveOneOut::measure_within(&examples, 2, 0.01, 120 * 3 * 60).expect("60");
        assert_eq!(loo.checked, 60);
        assert!(LeaveOneOut::measure_within(&examples, 2, 0.01, 120 * 3 * 49).is_none());
        assert!(LeaveOneOut::measure(&examples, 1, 0.01).is_none());
        assert!(LeaveOneOut::measure(&examples[..10], 2, 0.01).is_none());
        assert!(LeaveOneOut::measure(&[], 2, 0.01).is_none());
        let mut odd = examples.clone();
        odd[3].1 = 2;
        assert!(LeaveOneOut::measure(&odd, 2, 0.01).is_none());
    }
}
