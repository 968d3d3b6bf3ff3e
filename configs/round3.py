"""python -m launch.evolve --config=configs/round3.py --config.data.train_file=/path/to/problems.jsonl

Round 3: the round-2 policy and PPM, PPM-augmented MCTS, 16 rollouts. See configs/paper.py for the recipe.
"""

from configs.paper import round_config


def get_config():
    return round_config(3)
