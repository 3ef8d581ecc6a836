//! Link latency models: one latency per link, drawn from the seed, so that
//! a link delivers in order as a QUIC stream does.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the nodes of a geographic model sit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// A name, for reports.
    pub name: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// How long a message takes on each link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum LinkLatency {
    /// Every link the same.
    Static {
        /// One-way latency in milliseconds.
        ms: f64,
    },
    /// Each link its own latency, uniform in `min_ms..=max_ms`.
    Uniform {
        /// The shortest one-way latency, in milliseconds.
        min_ms: f64,
        /// The longest, in milliseconds.
        max_ms: f64,
    },
    /// Node `i` sits in region `i % regions.len()`; a link takes
    /// `base_ms` plus the great-circle distance between its regions at
    /// two thirds of the speed of light (light in fibre: 200 km per ms).
    Geographic {
        /// The regions.
        regions: Vec<Region>,
        /// The latency within a region, in milliseconds.
        base_ms: f64,
    },
}

impl LinkLatency {
    /// The one-way latency between nodes `a` and `b` for the run seeded
    /// with `seed` (the same both ways).
    pub fn between(&self, seed: u64, a: usize, b: usize) -> Duration {
        let ms = match self {
            LinkLatency::Static { ms } => *ms,
            LinkLatency::Uniform { min_ms, max_ms } => {
                let (lo, hi) = (min_ms.min(*max_ms), max_ms.max(*min_ms));
                let unit = (mix(seed, a.min(b), a.max(b)) >> 11) as f64 / (1u64 << 53) as f64;
                lo + (hi - lo) * unit
            }
            LinkLatency::Geographic { regions, base_ms } => {
                if regions.is_empty() {
                    *base_ms
                } else {
                    let (ra, rb) = (&regions[a % regions.len()], &regions[b % regions.len()]);
                    base_ms + distance_km(ra, rb) / 200.0
                }
            }
        };
        Duration::from_micros((ms.max(0.0) * 1000.0) as u64)
    }
}

/// A 64-bit mix of the seed and a link (SplitMix64's finaliser).
fn mix(seed: u64, a: usize, b: usize) -> u64 {
    let mut z = seed
        ^ (a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (b as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The great-circle distance between two regions (haversine, Earth radius
/// 6,371 km).
fn distance_km(a: &Region, b: &Region) -> f64 {
    let (la, lb) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lb - la;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la.cos() * lb.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_latencies_are_per_link_symmetric_and_in_range() {
        let model = LinkLatency::Uniform {
            min_ms: 10.0,
            max_ms: 50.0,
        };
        let mut seen = std::collections::BTreeSet::new();
        for a in 0..30 {
            for b in 0..30 {
                let d = model.between(7, a, b);
                assert_eq!(d, model.between(7, b, a));
                assert!((10_000..=50_000).contains(&d.as_micros()), "{d:?}");
                seen.insert(d.as_micros() / 1000);
            }
        }
        assert!(seen.len() > 30, "spread over the range: {seen:?}");
        assert_ne!(model.between(7, 1, 2), model.between(8, 1, 2));
    }

    #[test]
    fn geographic_latency_grows_with_distance() {
        let region = |name: &str, lat, lon| Region {
            name: name.into(),
            lat,
            lon,
        };
        let model = LinkLatency::Geographic {
            regions: vec![
                region("frankfurt", 50.1, 8.7),
                region("virginia", 38.9, -77.0),
                region("sydney", -33.9, 151.2),
            ],
            base_ms: 1.0,
        };
        let local = model.between(0, 0, 3);
        let atlantic = model.between(0, 0, 1);
        let far = model.between(0, 0, 2);
        assert_eq!(local, Duration::from_millis(1));
        // Frankfurt - Virginia is about 6,600 km: 33 ms one way in fibre.
        assert!((30..40).contains(&atlantic.as_millis()), "{atlantic:?}");
        assert!(far > atlantic);
    }
}
