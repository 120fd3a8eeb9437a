"""Scan-outcome predictions and parameter suggestions, from `technic_core.ml.scan_predictors`.

The trained champion answers when one is promoted, the documented baseline before that; every answer says
which (`model`) and, for the baseline, why and from what (docs/predictions.md). Neither state is an error:
bad input is a 422, everything else a 200. See `api.deps` for the dependency a deployment can override.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from api import auth, deps
from api.models import Prediction, PredictResponse, SuggestResponse
from api.predictions import ScanPredictors
from technic_core.config import ScanConfig
from technic_core.ml import scan_predictors
from technic_core.warehouse import Warehouse

router = APIRouter(tags=["predictions"])

#: The API's goals → the optimizer's preset names.
OPTIMIZER_GOALS = {"speed": "quick", "quality": "deep", "balanced": "balanced"}

WarehouseDep = Annotated[Warehouse, Depends(deps.store)]


def answering_predictors(
    store: WarehouseDep, champion: Annotated[ScanPredictors | None, Depends(deps.optional_scan_predictors)]
) -> scan_predictors.Predictors:
    """The champion, or the baseline while there is none. A plain `def`: loading the baseline reads files,
    so FastAPI runs it in the thread pool."""
    return champion if champion is not None else scan_predictors.BaselinePredictor.load(store)


PredictorsDep = Annotated[scan_predictors.Predictors, Depends(answering_predictors)]


def _answer_fields(answer: scan_predictors.Answer, conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": answer.model,
        "reason": answer.reason,
        "basis": answer.basis,
        "session": conditions.get("date"),
        "predicted": None
        if answer.predicted is None
        else Prediction(result_count=answer.predicted.result_count, duration_s=answer.predicted.duration_s),
    }


@router.post("/scan/predict", response_model=PredictResponse, dependencies=[Depends(auth.writer)])
def predict(config: ScanConfig, store: WarehouseDep, predictors: PredictorsDep) -> PredictResponse:
    """Predicted result count and duration of `config`, labeled with the model that gave them."""
    conditions = scan_predictors.current_conditions(store)
    return PredictResponse(**_answer_fields(predictors.answer(config, conditions), conditions))


@router.get("/scan/suggest", response_model=SuggestResponse, dependencies=[Depends(auth.reader)])
def suggest(
    store: WarehouseDep,
    predictors: PredictorsDep,
    goal: Annotated[
        Literal["speed", "quality", "balanced"], Query(description="what the scan should favour")
    ] = "balanced",
) -> SuggestResponse:
    """A `ScanConfig` for the goal with its predicted outcome (labeled like `/scan/predict`), warnings (too
    restrictive or too broad) and the sectors currently signalling most."""
    conditions = scan_predictors.current_conditions(store)
    suggestion = scan_predictors.suggest(store, OPTIMIZER_GOALS[goal], conditions, predictors)
    return SuggestResponse(
        **_answer_fields(suggestion.answer, conditions),
        goal=goal,
        config=suggestion.config,
        warnings=suggestion.warnings,
        hot_sectors=suggestion.hot_sectors,
    )
