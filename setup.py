"""Package metadata, read from settings.ini so that nbdev and pip agree on one source.

Every route works: `pip install .`, `pip install -e .`, `python -m build` (the sdist, then the wheel from the
sdist: MANIFEST.in puts settings.ini, LICENSE and README.md into the sdist)."""
import re
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).resolve().parent
cfg = ConfigParser(delimiters=['='], interpolation=None)
cfg.read(here / 'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

# trove's development statuses, by nbdev's `status` number (1-7)
statuses = {1: 'Planning', 2: 'Pre-Alpha', 3: 'Alpha', 4: 'Beta', 5: 'Production/Stable', 6: 'Mature', 7: 'Inactive'}
py_versions = ['3.10', '3.11', '3.12']
extras = {k[len('extra_'):]: v.split() for k, v in cfg.items() if k.startswith('extra_')}


def long_description():
    "README.md with its repository-relative links and images made absolute, so that they work on a package index."
    text = (here / 'README.md').read_text(encoding='utf-8')
    raw, blob = f"{cfg['git_url']}/raw/{cfg['branch']}/", f"{cfg['git_url']}/blob/{cfg['branch']}/"
    return re.sub(r'(!?)\]\((?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)\)',
                  lambda m: f"{m.group(1)}]({raw if m.group(1) else blob}{m.group(2)})", text)


setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=long_description(),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    url=cfg['git_url'],
    project_urls={'Documentation': cfg['doc_host'] + cfg['doc_baseurl'], 'Source': cfg['git_url']},
    keywords=cfg['keywords'].split(),
    classifiers=[f"Development Status :: {cfg['status']} - {statuses[int(cfg['status'])]}",
                 f"Intended Audience :: {cfg['audience']}",
                 f"Natural Language :: {cfg['language']}",
                 'Operating System :: OS Independent',
                 'Programming Language :: Python :: 3',
                 *[f'Programming Language :: Python :: {v}' for v in py_versions],
                 'Topic :: Scientific/Engineering :: Artificial Intelligence'],
    # the data folders (fixtures, recipes, launch) hold no __init__.py: they are namespace packages of data files
    packages=setuptools.find_namespace_packages(include=['hindsight_ref', 'hindsight_ref.*'], exclude=['*.__pycache__']),
    package_data={'hindsight_ref.fixtures': ['*.jsonl', '*.json'],
                  'hindsight_ref.fixtures.toyworld': ['*.json', '*.jinja', '*.safetensors'],
                  'hindsight_ref.recipes': ['*.yaml'],
                  'hindsight_ref.launch': ['*.yaml', '*.json']},
    include_package_data=False,
    python_requires=f">={cfg['min_python']}",
    install_requires=cfg['requirements'].split(),
    extras_require={'dev': cfg['dev_requirements'].split(), **extras},
    entry_points={'console_scripts': cfg['console_scripts'].split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
