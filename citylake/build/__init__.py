"""Build: staged zone → marts. The dbt runner (:mod:`.dbt`) and the publication groups read from
dbt's manifest (:mod:`.groups`)."""
