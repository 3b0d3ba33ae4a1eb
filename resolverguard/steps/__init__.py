"""The chain's steps, one module each; `resolverguard.pipeline` puts them in order."""
