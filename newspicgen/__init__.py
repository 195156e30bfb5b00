"""NewsPicGen core: evaluation and relevance ranking of drawing prompts."""
