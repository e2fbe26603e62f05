//! Pacing for providers that limit how fast a bot may write: Telegram allows about one
//! message a second to one chat and thirty a second overall. Each send reserves the next
//! free slot for its chat and overall, then waits for it, so a burst leaves at the allowed
//! rate instead of meeting 429s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct Pacer {
    per_key: Duration,
    overall: Duration,
    state: Mutex<State>,
}

struct State {
    next_overall: Instant,
    next_by_key: HashMap<String, Instant>,
}

impl Pacer {
    /// `per_key_rate` and `overall_rate` in messages per second.
    pub fn new(per_key_rate: f64, overall_rate: f64) -> Pacer {
        let interval = |rate: f64| Duration::from_secs_f64(1.0 / rate.max(0.001));
        Pacer {
            per_key: interval(per_key_rate),
            overall: interval(overall_rate),
            state: Mutex::new(State {
                next_overall: Instant::now(),
                next_by_key: HashMap::new(),
            }),
        }
    }

    /// The moment a message to `key` may go, reserved for it.
    fn reserve(&self, key: &str) -> Instant {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.next_by_key.len() > 10_000 {
            // Chats whose slot has passed need no memory.
            state.next_by_key.retain(|_, at| *at > now);
        }
        let key_next = state.next_by_key.get(key).copied().unwrap_or(now);
        let at = now.max(state.next_overall).max(key_next);
        state.next_overall = at + self.overall;
        state.next_by_key.insert(key.to_string(), at + self.per_key);
        at
    }

    /// Records that a message to `key` was just taken by the provider. Telegram counts
    /// arrivals, and a send may arrive later than its slot (network jitter, a 429 waited
    /// out); spacing the next one from here keeps a late arrival from crowding the next.
    pub fn sent(&self, key: &str) {
        let next = Instant::now() + self.per_key;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let entry = state.next_by_key.entry(key.to_string()).or_insert(next);
        *entry = (*entry).max(next);
    }

    /// Waits until a message to `key` may go.
    pub async fn wait(&self, key: &str) {
        let at = self.reserve(key);
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_chat_is_paced_at_its_rate_and_others_are_not_held_up() {
        let pacer = Pacer::new(1.0, 30.0);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..100 {
            pacer.wait("chat-1").await;
            times.push(start.elapsed());
        }
        // 100 messages to one chat: one a second, the first at once.
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(times[99], Duration::from_secs(99));
        assert!(times
            .windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_secs(1)));
        // Another chat goes in the next overall slot, not after chat-1's queue.
        let before = start.elapsed();
        pacer.wait("chat-2").await;
        assert!(start.elapsed() - before <= Duration::from_millis(34));
    }

    #[tokio::test(start_paused = true)]
    async fn many_chats_share_the_overall_rate() {
        let pacer = Pacer::new(1.0, 30.0);
        let start = Instant::now();
        for i in 0..61 {
            pacer.wait(&format!("chat-{i}")).await;
        }
        // 61 messages at 30/s: the last leaves two seconds after the first.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1990) && elapsed <= Duration::from_millis(2010),
            "{elapsed:?}"
        );
    }
}
