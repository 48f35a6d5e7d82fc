-- The fleet as last registered. One row per vehicle_id.
select * exclude (operator, source_row)
from {{ ref('stg_fleet__vehicles') }}
qualify row_number() over (partition by vehicle_id order by as_of_date desc, source_row desc) = 1
