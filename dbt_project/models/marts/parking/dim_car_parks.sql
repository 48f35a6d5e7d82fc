-- Car parks as last registered by each operator, with their conformance to the national
-- parking schema (v0.1.5) rules checked here: id pattern, INSEE code, capacity, coordinates.
-- One row per (operator, facility_id). A register row without a usable id (empty, or not the
-- national pattern, which staging leaves empty) is left out: it can name no car park, and a
-- warning test on stg_parking__facilities counts it, so one typo never refuses the parking
-- group, nor through it every operator's contract KPIs.
with latest as (
    select * from {{ ref('stg_parking__facilities') }}
    where facility_id is not null
    qualify row_number() over (partition by operator, facility_id order by as_of_date desc, source_row desc) = 1
)

select
    * exclude (source_row),
    regexp_full_match(facility_id, '([013-9]\d|2[AB1-9])\d{3}-P-\d{3}') as has_valid_id,
    regexp_full_match(insee, '([013-9]\d|2[AB1-9])\d{3}') as has_valid_insee,
    capacity is not null and capacity >= 0 as has_capacity,
    lat between -90 and 90 and lon between -180 and 180 as has_coordinates,
    is_valid
    and regexp_full_match(facility_id, '([013-9]\d|2[AB1-9])\d{3}-P-\d{3}')
    and regexp_full_match(insee, '([013-9]\d|2[AB1-9])\d{3}')
    and capacity is not null
        as is_schema_conformant,
    {{ wkb_point('lon', 'lat') }} as geometry
from latest
