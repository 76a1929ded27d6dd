//! placeholder, replaced by the attack work.
