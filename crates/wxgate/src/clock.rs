//! The clock wxgate reads token lifetimes and daily windows from. In production it is real
//! time; a test shares one instance with the simulator and moves both at once: both take it
//! from the small `wxclock` crate, so one `advance` moves the world.

pub use wxclock::{Clock, day_index};

/// Milliseconds until the next 00:00 Asia/Shanghai, when WeChat's daily counters reset.
pub fn next_shanghai_midnight_ms(now_ms: i64) -> i64 {
    (day_index(now_ms) + 1) * 86_400_000 - 8 * 3_600_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midnight_is_in_the_future_and_starts_a_new_day() {
        let now = 1_767_196_000_000;
        let m = next_shanghai_midnight_ms(now);
        assert!(m > now && m - now <= 86_400_000);
        assert_eq!(day_index(m), day_index(now) + 1);
        assert_eq!(day_index(m - 1), day_index(now));
    }
}
