//! placeholder, replaced by the gar work.
