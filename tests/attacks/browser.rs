//! Attacks: browser (being written).
