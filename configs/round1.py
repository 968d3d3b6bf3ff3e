"""python -m launch.evolve --config=configs/round1.py --config.data.train_file=/path/to/problems.jsonl

Round 1 (bootstrap): terminal-guided MCTS, 8 rollouts. See configs/paper.py for the recipe.
"""

from configs.paper import round_config


def get_config():
    return round_config(1)
