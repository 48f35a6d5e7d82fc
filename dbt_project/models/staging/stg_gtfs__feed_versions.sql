select
    operator,
    feed_version,
    cast(valid_from as date) as valid_from,
    cast(valid_to as date) as valid_to,
    source_sha256,
    delivered_at
from {{ source('staged', 'gtfs_feed_versions') }}
