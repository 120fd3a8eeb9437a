"""Scan-outcome predictions and parameter suggestions, from `technic_core.ml.scan_predictors`.

Both answer 503 with the reason (module not installed, or no predictor trained yet) until the ML stage has
produced a predictor — after validating the request, so bad input is a 422 either way. See `api.deps` for
the dependencies a deployment can override.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from api import auth, deps
from api.models import Prediction, PredictResponse, SuggestResponse
from api.predictions import ScanPredictors
from technic_core.config import ScanConfig
from technic_core.warehouse import Warehouse

router = APIRouter(tags=["predictions"])

WarehouseDep = Annotated[Warehouse, Depends(deps.store)]


def _prediction(outcome: Any) -> Prediction:
    return Prediction(result_count=outcome.result_count, duration_s=outcome.duration_s)


@router.post("/scan/predict", response_model=PredictResponse, dependencies=[Depends(auth.writer)])
def predict(
    request: Request,
    config: ScanConfig,
    store: WarehouseDep,
    predictors: Annotated[ScanPredictors | None, Depends(deps.optional_scan_predictors)],
) -> PredictResponse:
    """Predicted result count and duration of `config` under the latest market conditions."""
    if predictors is None:
        raise deps.prediction_unavailable(request)
    session, conditions = deps.latest_conditions(store)
    return PredictResponse(session=session, predicted=_prediction(predictors.predict(config, conditions)))


@router.get("/scan/suggest", response_model=SuggestResponse, dependencies=[Depends(auth.reader)])
def suggest(
    request: Request,
    store: WarehouseDep,
    suggester: Annotated[deps.Suggester | None, Depends(deps.optional_parameter_suggester)],
    goal: Annotated[Literal["speed", "quality", "balanced"], Query(description="what the scan should favour")] = "balanced",
) -> SuggestResponse:
    """A `ScanConfig` for the goal under the latest market conditions, with its predicted outcome,
    warnings (too restrictive or too broad) and the sectors currently signalling most."""
    if suggester is None:
        raise deps.prediction_unavailable(request)
    session, conditions = deps.latest_conditions(store)
    suggestion = suggester(goal, conditions)
    config = suggestion.config if isinstance(suggestion.config, ScanConfig) else ScanConfig.model_validate(suggestion.config)
    return SuggestResponse(
        goal=goal,
        session=session,
        config=config,
        predicted=_prediction(suggestion.predicted) if suggestion.predicted is not None else None,
        warnings=list(suggestion.warnings),
        hot_sectors=list(suggestion.hot_sectors),
    )
