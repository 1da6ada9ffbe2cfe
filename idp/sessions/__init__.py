"""Browser sessions as rows (one per signed-in browser: who, where from, since when, which clients
signed in through it), ending them (one service for every path: the user, staff, sign-out,
deactivation), and telling the clients when one ends (OpenID Connect Back-Channel and Front-Channel
Logout 1.0). docs/sessions-and-logout.md is the user's side of it."""
