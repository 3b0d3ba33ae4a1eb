"""The web dashboard and the HTTP API (`dashboard:` in the policy; docs/api.md), served by aiohttp
on the resolver's own event loop. Store reads run in worker threads; actions run on the loop."""
