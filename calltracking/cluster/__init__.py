"""Several web nodes, one site: each site's decisions are made by one owner node at a time.

`shards.py` maps a site to its shard; `messages.py` encodes what a node forwards to a shard's
owner and what the owner answers; `rabbit.py` is the ownership and the forwarding on RabbitMQ
(a shard's owner is the connection holding its exclusive queue). The decider service
(store/deciders.py) routes each change: decided here when this node owns the site's shard (or
there is no cluster), forwarded to the owner otherwise. Ownership only routes; correctness
still comes from the site's lock and version in every batch.
"""
