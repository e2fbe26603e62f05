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
/// with every other, and this bounds the work (checked × questions × dimensions
/// multiply-adds, about a fifth of a second on one core).
const CHECKED: usize = 300;
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
    /// Measured on `(unit vector, class)` examples, classes numbered `0..classes`; `None`
    /// when there are too few examples or too many to check within the work budget, or
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
        let n = examples.len();
        let dim = examples_dim(examples, classes)?;
        let affordable = (max_work / (n * dim) as u64) as usize;
        let checked = CHECKED.min(affordable).min(n);
        if checked < MIN_CHECKED {
            return None;
        }
        // Each article's sum of vectors and its squared length: the mean without one of
        // them is the sum less that one, its length known without another pass.
        let mut sums = vec![0f32; classes * dim];
        for (v, c) in examples {
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
                    .filter_map(|(c, (s, len))| {
                        let (d, len) = if c == class {
                            let d = dot(v, s);
                            // |s - v|² = |s|² - 2 s·v + |v|², with |v| = 1.
                            (d - 1.0, len - 2.0 * d + 1.0)
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
