//! refwatch-oracle: the Linux kernel as the reference for refwatch's connection tracking.
