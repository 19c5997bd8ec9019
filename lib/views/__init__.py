"""Views: what each internal page shows, built from the engine (overview, planner map and its URL, hotspot
story, rollout tables and charts, report), and the publisher that writes the public snapshot."""
