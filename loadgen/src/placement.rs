//! Which partition of a topic each window of messages goes to: all in turn,
//! or a share of them to a few hot partitions (skewed placement, to load
//! one shard of a node more than the others).
//!
//! Sans-IO and deterministic: window `w` of a topic (its `w`-th run of
//! `batch` messages) goes to a partition computed from `w` alone, so a
//! run's placement can be tested exactly and reproduced.

/// How a topic's windows are spread over its partitions.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionChoice {
    /// Window `w` to partition `w % partitions`.
    Uniform { partitions: u32 },
    /// `share` of the windows to `hot` (in turn), the rest to `cold`.
    Skewed {
        hot: Vec<u32>,
        cold: Vec<u32>,
        share: f64,
    },
}

impl PartitionChoice {
    /// `share` (in (0, 1]) of the windows to the `hot` partitions of
    /// `partitions`, spread evenly among them; the rest to the others.
    pub fn skewed(partitions: u32, hot: &[u32], share: f64) -> Result<Self, String> {
        if !(share > 0.0 && share <= 1.0) {
            return Err(format!("the hot share must be in (0, 1], not {share}"));
        }
        if hot.is_empty() {
            return Err("no hot partitions".into());
        }
        let mut sorted = hot.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("hot partition {} is listed twice", w[0]));
        }
        if let Some(p) = hot.iter().find(|&&p| p >= partitions) {
            return Err(format!(
                "hot partition {p} does not exist: topics have partitions 0..{partitions}"
            ));
        }
        let cold: Vec<u32> = (0..partitions).filter(|p| !hot.contains(p)).collect();
        if cold.is_empty() && share < 1.0 {
            return Err(format!(
                "every partition is hot, so nothing can take the other {:.0}%",
                (1.0 - share) * 100.0
            ));
        }
        Ok(PartitionChoice::Skewed {
            hot: hot.to_vec(),
            cold,
            share,
        })
    }

    /// The partition of window `w`.
    pub fn partition(&self, w: u64) -> u32 {
        match self {
            PartitionChoice::Uniform { partitions } => (w % u64::from(*partitions)) as u32,
            PartitionChoice::Skewed { hot, cold, share } => {
                // Window w is hot when floor((w + 1)·share) steps past
                // floor(w·share): exactly floor(n·share) of the first n
                // windows are hot, evenly spaced, with no generator to seed.
                let hot_before = (w as f64 * share).floor() as u64;
                let hot_through = ((w + 1) as f64 * share).floor() as u64;
                if hot_through > hot_before {
                    hot[(hot_before % hot.len() as u64) as usize]
                } else {
                    let cold_before = w - hot_before;
                    cold[(cold_before % cold.len() as u64) as usize]
                }
            }
        }
    }

    /// The hot partitions, if any.
    pub fn hot(&self) -> Option<&[u32]> {
        match self {
            PartitionChoice::Uniform { .. } => None,
            PartitionChoice::Skewed { hot, .. } => Some(hot),
        }
    }
}

/// The partitions of `topic` (of `partitions`) that a node with `shards`
/// shards places on shard `shard` at first (its default placement,
/// before any rebalancing moves them).
pub fn partitions_on_shard(topic: &str, partitions: u32, shard: usize, shards: usize) -> Vec<u32> {
    (0..partitions)
        .filter(|&p| sprawl_shards::owner_shard(topic, p, shards) == shard)
        .collect()
}

/// A list of partitions on the command line: `0,3,5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionList(pub Vec<u32>);

impl std::str::FromStr for PartitionList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(|p| {
                p.trim()
                    .parse::<u32>()
                    .map_err(|e| format!("partition {p:?}: {e}"))
            })
            .collect::<Result<_, _>>()
            .map(PartitionList)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(choice: &PartitionChoice, partitions: u32, windows: u64) -> Vec<u64> {
        let mut n = vec![0; partitions as usize];
        for w in 0..windows {
            n[choice.partition(w) as usize] += 1;
        }
        n
    }

    #[test]
    fn uniform_takes_partitions_in_turn() {
        let u = PartitionChoice::Uniform { partitions: 3 };
        let first: Vec<u32> = (0..7).map(|w| u.partition(w)).collect();
        assert_eq!(first, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn the_hot_share_goes_to_the_hot_partitions_evenly() {
        let s = PartitionChoice::skewed(8, &[0, 3, 5], 0.9).unwrap();
        let n = counts(&s, 8, 10_000);
        // 9000 hot windows, 3000 each; 1000 cold ones over 5 partitions.
        assert_eq!(n, [3000, 200, 200, 3000, 200, 3000, 200, 200]);
        // Any prefix is within one window of its share.
        for windows in [1u64, 7, 10, 33, 101] {
            let hot: u64 = (0..windows)
                .filter(|&w| s.hot().unwrap().contains(&s.partition(w)))
                .count() as u64;
            assert_eq!(hot, (windows as f64 * 0.9).floor() as u64, "{windows}");
        }
    }

    #[test]
    fn a_low_share_and_a_full_share() {
        let s = PartitionChoice::skewed(4, &[2], 0.25).unwrap();
        assert_eq!(counts(&s, 4, 400), [100, 100, 100, 100]);
        let all = PartitionChoice::skewed(4, &[1, 2], 1.0).unwrap();
        assert_eq!(counts(&all, 4, 10), [0, 5, 5, 0]);
        assert_eq!(
            PartitionChoice::skewed(2, &[0, 1], 1.0)
                .unwrap()
                .partition(3),
            1
        );
    }

    #[test]
    fn bad_hot_lists_are_refused() {
        let err = |hot: &[u32], share: f64| PartitionChoice::skewed(4, hot, share).unwrap_err();
        assert!(err(&[4], 0.9).contains("does not exist"));
        assert!(err(&[1, 1], 0.9).contains("listed twice"));
        assert!(err(&[], 0.9).contains("no hot"));
        assert!(err(&[0], 0.0).contains("(0, 1]"));
        assert!(err(&[0], 1.5).contains("(0, 1]"));
        assert!(err(&[0, 1, 2, 3], 0.9).contains("every partition is hot"));
        assert_eq!("0, 3,5".parse(), Ok(PartitionList(vec![0, 3, 5])));
        assert!("0,x".parse::<PartitionList>().is_err());
        assert!("".parse::<PartitionList>().is_err());
    }

    #[test]
    fn partitions_on_a_shard_are_those_the_node_places_there() {
        let on: Vec<Vec<u32>> = (0..3)
            .map(|k| partitions_on_shard("orders", 12, k, 3))
            .collect();
        let mut all: Vec<u32> = on.concat();
        all.sort_unstable();
        assert_eq!(all, (0..12).collect::<Vec<_>>(), "each exactly once");
        for (k, parts) in on.iter().enumerate() {
            for &p in parts {
                assert_eq!(sprawl_shards::owner_shard("orders", p, 3), k);
            }
        }
    }
}
