"""The ScaleDet detector: reads a labelspace build, trains and evaluates with hard + soft label losses."""
