"""Every behavioural parameter of the simulator, with where its value comes from.

``methods_and_kpis.md`` is ``../shared/reference/methods_and_kpis.md`` (the project's research
notes); a value marked *assumption* is ours, chosen to be plausible and easy to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCALES = {
    # validations on a term-time weekday; metro also fixes the trips per day by tiling
    "small": {"validations": 20_000, "trips": None},
    "metro": {"validations": 1_500_000, "trips": 17_500},
}


@dataclass(frozen=True)
class VehicleClass:
    name: str
    model: str
    seated: int
    standing: int

    @property
    def capacity(self) -> int:
        return self.seated + self.standing


#: Generic vehicle classes (assumption: typical French urban fleet sizes, not a maker's spec).
VEHICLE_CLASSES = {
    "midibus": VehicleClass("midibus", "Midibus 9,5 m", 22, 38),
    "standard": VehicleClass("standard", "Standard 12 m", 28, 67),
    "articulated": VehicleClass("articulated", "Articulé 18 m", 42, 108),
    "tram": VehicleClass("tram", "Tramway 32 m", 60, 190),
    "metro": VehicleClass("metro", "Rame de métro", 200, 700),
    "rail": VehicleClass("rail", "Rame ferroviaire", 300, 400),
}


@dataclass(frozen=True)
class Params:
    # -- riders ----------------------------------------------------------------------------
    #: Population mix (assumption).
    share_workers: float = 0.45
    share_students: float = 0.25
    #: Probability a rider travels, per rider type and day label (assumption).
    travel_prob: dict = field(
        default_factory=lambda: {
            "worker": {"weekday": 0.85, "weekday_school_holiday": 0.72, "saturday": 0.2, "sunday_holiday": 0.08},
            "student": {"weekday": 0.92, "weekday_school_holiday": 0.08, "saturday": 0.05, "sunday_holiday": 0.02},
            "occasional": {"weekday": 0.35, "weekday_school_holiday": 0.38, "saturday": 0.55, "sunday_holiday": 0.3},
        }
    )
    #: Share of travel days that are one-way by bus (single-tap days). Lei et al. 2021 list
    #: 4.9-17.5 % for most systems (methods_and_kpis.md §1.2).
    one_way_share: float = 0.08
    #: Workers who add a midday round trip (assumption).
    midday_share: float = 0.08
    #: Journeys with a transfer (assumption, typical of a radial bus network).
    transfer_share: float = 0.25
    #: Riders who never validate (fraud). National average ~10 %, ~5 % on small networks
    #: (methods_and_kpis.md §1.4).
    fraud_share: float = 0.08
    #: Pass holders who do not validate when transferring ("non-validation", measured apart from
    #: fraud in Bordeaux's 2011 survey, methods_and_kpis.md §1.4); value an assumption.
    transfer_non_validation: float = 0.25
    #: Occasional riders on a paper ticket: a serial per ticket, no card to chain (assumption).
    paper_ticket_share: float = 0.06
    #: Cards that validate twice within seconds (UrbanTrips' duplicate window, §1.1); assumption.
    double_validation_share: float = 0.01
    #: Validations whose stop the ticketing-AVL interface drops (assumption).
    missing_stop_share: float = 0.03
    #: Walking: a transfer or return stop is at most this far (ODX uses 1,000 m max transfer,
    #: Lei et al. 400 m, §1.1); speed 1.1 m/s (ODX minimum 3,000 m/h = 0.83 m/s).
    transfer_walk_m: float = 400.0
    return_walk_m: float = 500.0
    walk_speed_mps: float = 1.1

    # -- service ---------------------------------------------------------------------------
    #: Trips cancelled for internal causes other than missing vehicles (assumption; Lyon's
    #: internal-cause losses were 0.12-2.36 % of the offer, methods_and_kpis.md §2.2).
    cancel_share: float = 0.006
    #: Trips detoured, skipping 2-4 consecutive stops (assumption).
    detour_share: float = 0.01
    #: External disruptions (an accident, a road closed, a demonstration: aléa externe): a line's
    #: trips starting within the event's duration run late by a few minutes and some are lost;
    #: events are drawn so that external losses stay a fifth of cancel_share (assumptions).
    external_event_duration_s: tuple[int, int] = (1800, 5400)
    external_event_delay_s: tuple[int, int] = (240, 720)
    external_event_loss_share: float = 0.3
    #: Running-time model (assumption): start delay (s), lognormal spread of segment running
    #: times, slowdown at peak, dwell time range (s).
    start_delay_mean_s: float = 20.0
    start_delay_sd_s: float = 45.0
    running_time_sd: float = 0.12
    peak_running_slowdown: float = 0.08
    dwell_s: tuple[int, int] = (8, 35)

    # -- counting --------------------------------------------------------------------------
    #: Share of vehicles with APC (the issue's ~20 %).
    apc_share: float = 0.20
    #: Infrared APC under-counts, alightings more accurately (methods_and_kpis.md §1.5); rates
    #: are assumptions.
    apc_miss_boarding: float = 0.04
    apc_miss_alighting: float = 0.03
    apc_spurious_rate: float = 0.03
    #: Manual counts (enquête de comptage) on weekdays: the share of the trips that ran surveyed
    #: (a continuous campaign, assumption), and the surveyors' own error: a few passengers missed,
    #: rare double counts (assumptions, far smaller than the counters').
    survey_trip_share: float = 0.08
    survey_miss: float = 0.01
    survey_spurious_rate: float = 0.005

    # -- fleet and maintenance ------------------------------------------------------------
    #: Spare vehicles above the peak requirement; FTA caps spares at 20 % (§2.4).
    spare_ratio: float = 0.12
    #: Mean km between failures; MARTA reported 6,665 miles = 10,726 km (§2.4).
    mean_km_between_failures: float = 10_700.0
    #: Preventive plan every N km, tolerance ±10 % (§2.4: tolerance and targets are contract
    #: parameters; 10 % is the reference's example).
    preventive_interval_km: float = 15_000.0
    preventive_tolerance: float = 0.10
    #: Share of preventive jobs done late, beyond the tolerance (assumption).
    preventive_late_share: float = 0.12
    #: Regulatory inspection of buses every six months (contrôle technique, assumption to check
    #: against the contract).
    inspection_interval_days: int = 182
    #: Peak hour at which availability is counted (PPIAF Urban Bus Toolkit, §2.4).
    peak_check_s: int = 8 * 3600

    # -- parking ---------------------------------------------------------------------------
    parking_step_min: int = 5
    parking_event_prob: float = 0.04
