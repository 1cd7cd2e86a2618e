//! Integration tests for countermesh live in `it/` (one binary) and `decode_alloc.rs`.
