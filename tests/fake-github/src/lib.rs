//! A strict, stateful fake of GitHub's self-hosted runner REST API.
