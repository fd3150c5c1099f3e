//! Runs the component stamp's unit tests: cargo does not run a build script's tests.

mod stamp;
