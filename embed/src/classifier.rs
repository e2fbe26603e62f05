//! A linear classifier over the encoder's vectors: a softmax over articles learned from the
//! vectors of their questions. It lives beside the encoder because it is the same kind of
//! work (arithmetic in tight loops, built optimised even in a debug build), and the
//! knowledge ranking trains one whenever the articles change.

/// Small knowledge bases get more passes, up to this many steps in all, or the model barely
/// moves from where it started.
const MIN_STEPS: usize = 3_000;

/// A softmax over articles learned from the sentence encoder's vectors of their questions:
/// where the nearest mean question (the centroid) tells coarse topics apart, the learned
/// weights find the directions that separate fine-grained articles (BANKING77's "card
/// arrival" from "card delivery estimate"). Trained like the desk's lexical model, by
/// passes of stochastic gradient descent with the learning rate decaying linearly, within a
/// work budget: a large knowledge base gets fewer passes, and one too large for
/// [`DENSE_MIN_EPOCHS`] passes gets none ([`Classifier::train`] answers `None`), so building
/// the ranking stays bounded.
#[derive(Debug, Clone)]
pub struct Classifier {
    classes: usize,
    /// Row-major: one row of `classes` weights per vector dimension.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// Passes over the questions, and how many at the least (fewer underfit: the model is then
/// left out).
const DENSE_EPOCHS: usize = 12;
const DENSE_MIN_EPOCHS: usize = 2;
const DENSE_LEARNING_RATE: f32 = 0.03;
/// The encoder's vectors are unit length and their cosines live in a narrow band: scaled up
/// so that the weights need not grow large to make confident probabilities.
const DENSE_SCALE: f32 = 15.0;
/// At most this much training work (passes × questions × dimensions × articles, each a
/// multiply-add forward and another back): about a second on one core.
const DENSE_MAX_WORK: u64 = 3_000_000_000;

impl Classifier {
    /// Learns from `(vector, class)` examples, classes numbered `0..classes`; `None` when
    /// there is nothing to learn or the work budget does not allow the minimum passes.
    pub fn train(examples: &[(&[f32], usize)], classes: usize) -> Option<Classifier> {
        Classifier::train_within(examples, classes, DENSE_MAX_WORK)
    }

    fn train_within(
        examples: &[(&[f32], usize)],
        classes: usize,
        max_work: u64,
    ) -> Option<Classifier> {
        let dim = examples_dim(examples, classes)?;
        let per_pass = (examples.len() * dim * classes) as u64;
        let affordable = (max_work / per_pass.max(1)) as usize;
        let epochs = DENSE_EPOCHS
            .max(MIN_STEPS.div_ceil(examples.len()))
            .min(affordable);
        if epochs < DENSE_MIN_EPOCHS {
            return None;
        }
        let mut model = Classifier {
            classes,
            weights: vec![0.0; dim * classes],
            bias: vec![0.0; classes],
        };
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut scores = vec![0.0f32; classes];
        let steps = (epochs * examples.len()) as f32;
        let mut step = 0.0f32;
        for _ in 0..epochs {
            shuffle(&mut order, &mut rng);
            for &i in &order {
                let (v, class) = examples[i];
                model.scores_into(v, &mut scores);
                softmax(&mut scores);
                scores[class] -= 1.0;
                let lr = DENSE_LEARNING_RATE * (1.0 - 0.9 * step / steps);
                step += 1.0;
                for (b, g) in model.bias.iter_mut().zip(&scores) {
                    *b -= lr * g;
                }
                for (x, row) in v.iter().zip(model.weights.chunks_exact_mut(classes)) {
                    let x = lr * DENSE_SCALE * x;
                    for (w, g) in row.iter_mut().zip(&scores) {
                        *w -= x * g;
                    }
                }
            }
        }
        Some(model)
    }

    fn scores_into(&self, v: &[f32], scores: &mut [f32]) {
        scores.copy_from_slice(&self.bias);
        for (x, row) in v.iter().zip(self.weights.chunks_exact(self.classes)) {
            let x = DENSE_SCALE * x;
            for (s, w) in scores.iter_mut().zip(row) {
                *s += x * w;
            }
        }
    }

    /// The log-probability of each class for a query's vector.
    pub fn log_probabilities(&self, v: &[f32]) -> Vec<f32> {
        let mut scores = vec![0.0f32; self.classes];
        self.scores_into(v, &mut scores);
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let total: f32 = scores.iter().map(|s| (s - max).exp()).sum();
        let log_total = max + total.ln();
        scores.iter_mut().for_each(|s| *s -= log_total);
        scores
    }

    /// Bytes held by the weights, for the benchmark.
    pub fn memory_bytes(&self) -> usize {
        (self.weights.len() + self.bias.len()) * 4
    }
}

/// The length of the examples' vectors, when they make something to learn from: at least
/// two classes, every vector of one non-zero length, and every class in `0..classes`.
pub(crate) fn examples_dim(examples: &[(&[f32], usize)], classes: usize) -> Option<usize> {
    let dim = examples.first()?.0.len();
    let fit =
        classes >= 2 && dim > 0 && examples.iter().all(|(v, c)| v.len() == dim && *c < classes);
    fit.then_some(dim)
}

/// Probabilities from scores, in place.
pub fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    for s in scores.iter_mut() {
        *s /= sum;
    }
}

/// Fisher-Yates with xorshift64: no dependency for a seeded shuffle.
pub fn shuffle(order: &mut [usize], state: &mut u64) {
    for i in (1..order.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        order.swap(i, (*state % (i as u64 + 1)) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit vectors near one of `axes` directions, each a little off it.
    fn near(axis: usize, wobble: usize) -> Vec<f32> {
        let mut v = [0.0f32; 16];
        v[axis] = 1.0;
        v[(axis + 1 + wobble) % 16] = 0.3;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    }

    #[test]
    fn the_classifier_over_vectors_learns_which_article_a_vector_is_near() {
        let vectors: Vec<(Vec<f32>, usize)> = (0..4)
            .flat_map(|class| (0..5).map(move |w| (near(class * 3, w), class)))
            .collect();
        let examples: Vec<(&[f32], usize)> = vectors.iter().map(|(v, c)| (&v[..], *c)).collect();
        let model = Classifier::train(&examples, 4).expect("trained within its budget");
        for class in 0..4 {
            let p = model.log_probabilities(&near(class * 3, 7));
            let best = (0..4).max_by(|a, b| p[*a].total_cmp(&p[*b])).unwrap();
            assert_eq!(best, class, "{p:?}");
            let total: f32 = p.iter().map(|l| l.exp()).sum();
            assert!((total - 1.0).abs() < 1e-4, "{total}");
        }
        assert_eq!(model.memory_bytes(), (16 * 4 + 4) * 4);
    }

    #[test]
    fn no_classifier_over_vectors_beyond_its_work_budget_or_without_two_articles() {
        let vectors: Vec<(Vec<f32>, usize)> = (0..40).map(|n| (near(n % 16, n), n % 2)).collect();
        let examples: Vec<(&[f32], usize)> = vectors.iter().map(|(v, c)| (&v[..], *c)).collect();
        // One pass is 40 questions x 16 dimensions x 2 articles: room for one pass only.
        assert!(Classifier::train_within(&examples, 2, 40 * 16 * 2).is_none());
        assert!(
            Classifier::train_within(&examples, 2, 40 * 16 * 2 * DENSE_MIN_EPOCHS as u64).is_some()
        );
        assert!(Classifier::train(&examples[..1], 1).is_none());
        assert!(Classifier::train(&[], 3).is_none());
        // A vector of another length, or a class out of range, is no example.
        let short = [1.0f32; 3];
        let mut odd = examples.clone();
        odd.push((&short, 0));
        assert!(Classifier::train(&odd, 2).is_none());
        let mut odd = examples.clone();
        odd[0].1 = 5;
        assert!(Classifier::train(&odd, 2).is_none());
    }
}
