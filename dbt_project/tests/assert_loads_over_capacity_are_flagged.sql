-- Issue #31: an estimated load above the vehicle's capacity is never published without its flag
-- (fct_stop_visit_loads.is_over_capacity), which the load profile counts (visits_over_capacity).
select *
from {{ ref('fct_stop_visit_loads') }}
where load_estimated > vehicle_capacity + 1e-6 and not is_over_capacity
