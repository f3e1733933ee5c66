//! [`Tier`]: the intelligence tiers, ordered by cost. The registry files cortices under one,
//! the router picks one, the predictor indexes them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An intelligence tier, ordered by cost: `Reactive < Operational < Tactical < Strategic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Rules and learned procedures in process; no model call.
    Reactive,
    /// A small model (the embedded one): classification, extraction, short answers.
    Operational,
    /// A local 7-13B model: planning, tool use.
    Tactical,
    /// A frontier API: hard reasoning, code, security analysis.
    Strategic,
}

impl Tier {
    /// Every tier, cheapest first; a tier's position is its index in the predictor.
    pub const ALL: [Tier; 4] = [
        Tier::Reactive,
        Tier::Operational,
        Tier::Tactical,
        Tier::Strategic,
    ];

    /// The tier's index in the predictor (0 the cheapest).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The tier at `index`.
    pub fn from_index(index: usize) -> Option<Tier> {
        Self::ALL.get(index).copied()
    }

    /// The name used in the registry file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Reactive => "reactive",
            Tier::Operational => "operational",
            Tier::Tactical => "tactical",
            Tier::Strategic => "strategic",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tier name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier `{0}`: use one of reactive, operational, tactical, strategic")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTier(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_order_by_cost_index_and_parse() {
        assert!(Tier::Reactive < Tier::Operational);
        assert!(Tier::Operational < Tier::Tactical);
        assert!(Tier::Tactical < Tier::Strategic);
        for (index, tier) in Tier::ALL.into_iter().enumerate() {
            assert_eq!(tier.index(), index);
            assert_eq!(Tier::from_index(index), Some(tier));
            assert_eq!(tier.as_str().parse::<Tier>(), Ok(tier));
        }
        assert_eq!(Tier::from_index(4), None);
        assert_eq!(
            "fast".parse::<Tier>().map_err(|e| e.to_string()),
            Err(
                "unknown tier `fast`: use one of reactive, operational, tactical, strategic".into()
            )
        );
    }
}
