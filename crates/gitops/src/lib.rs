//! The GitOps agent (pull deployment): fetch a deployment repository, render the desired
//! state, diff it with the live state of a target and apply only the difference.
