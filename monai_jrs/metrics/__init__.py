# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Metrics for joint registration and segmentation: Dice, HD95, TRE, folding, inverse consistency."""

from __future__ import annotations

from .evaluate import evaluate_registration
from .registration import (
    FoldingPercentageMetric,
    InverseConsistencyMetric,
    TargetRegistrationErrorMetric,
    folding_percentage,
    inverse_consistency_error,
    inverse_consistency_map,
    registration_error,
    registration_error_map,
)
from .segmentation import DiceScoreMetric, DistanceMetric, HD95Metric, compute_dice_score, compute_hd95
from .utils import DistanceUnit, check_mask, inside_fov, prepare_spacing

__all__ = [
    "DiceScoreMetric",
    "DistanceMetric",
    "DistanceUnit",
    "FoldingPercentageMetric",
    "HD95Metric",
    "InverseConsistencyMetric",
    "TargetRegistrationErrorMetric",
    "check_mask",
    "compute_dice_score",
    "compute_hd95",
    "evaluate_registration",
    "folding_percentage",
    "inside_fov",
    "inverse_consistency_error",
    "inverse_consistency_map",
    "prepare_spacing",
    "registration_error",
    "registration_error_map",
]
