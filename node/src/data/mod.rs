//! placeholder, replaced by the data work.
