from dataclasses import dataclass

@dataclass
class Result:
    area: float
    label: str

def measure(width: float, height: float) -> Result:
    return Result(area=width * height, label=f"{width}x{height}")
