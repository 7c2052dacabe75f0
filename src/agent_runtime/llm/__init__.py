"""Model providers behind one small interface. Only this package imports provider SDKs."""
