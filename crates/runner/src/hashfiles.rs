//! `hashFiles()` over the workspace.
